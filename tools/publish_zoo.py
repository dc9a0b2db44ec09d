"""Publish a training run (or a compressed variant) into the zoo (maintainers): fp16 weights +
generated card, and docs/zoo.md regenerated.

    python tools/publish_zoo.py RUN_DIR NAME --data ../shared/data/camvid --command "edgeseg train ..."
    python tools/publish_zoo.py OUT/int8_qat.pt NAME-int8 --data ../shared/data/camvid --command "edgeseg compress ..."
    python tools/publish_zoo.py HOLDOUT_RUN NAME --recipe-holdout --data ../shared/data/camvid --command "edgeseg train ..."

--recipe-holdout records on NAME's card the sequence hold-out score of a separate run of its
recipe (trained with --holdout-groups); NAME's weights are left as they are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeseg.publish import attach_recipe_holdout, publish, publish_compressed, write_zoo_index

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder (its best.pt), or a compressed .pt "
                                                "written by `edgeseg compress`")
    parser.add_argument("name")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--command", required=True, help="the exact training / compress command, recorded in the card")
    parser.add_argument("--hardware", default=None)
    parser.add_argument("--recipe-holdout", action="store_true",
                        help="RUN is a hold-out run of NAME's recipe: score it and add it to NAME's card")
    args = parser.parse_args()
    if args.recipe_holdout:
        card = attach_recipe_holdout(args.name, args.run, data=args.data, command=args.command,
                                     hardware=args.hardware, log_dir=REPO / "docs" / "zoo")
        write_zoo_index(REPO / "docs" / "zoo.md")
        run = card["holdout"]["recipe_run"]
        print(f"{card['name']}: recipe hold-out ({', '.join(run['groups'])}) last {run['last_miou']:.4f}, "
              f"best {run['best_miou']:.4f}")
        sys.exit(0)
    if args.run.is_file():
        card = publish_compressed(args.run, args.name, data=args.data, command=args.command, hardware=args.hardware)
    else:
        card = publish(args.run, args.name, data=args.data, command=args.command, hardware=args.hardware,
                       log_dir=REPO / "docs" / "zoo")
    write_zoo_index(REPO / "docs" / "zoo.md")
    print(f"{card['name']}: val mIoU {card['metrics']['val_miou']:.4f}, "
          f"{card['weights']['bytes'] / 2**20:.2f} MB -> edgeseg/zoo/{card['weights']['file']}")
    sys.exit(0)
