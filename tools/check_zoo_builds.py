"""Build zoo models for every CPU target and precision and record, on each card, which builds
pass the parity gate (maintainers). The default model must build for every CPU target
(``edgeseg.zoo.default_model_name`` skips a card that records a failed CPU build).

    python tools/check_zoo_builds.py dabnet-camvid enet-camvid --data ../shared/data/camvid [--threads 2]

Each build is ``edgeseg build NAME --target T --precision P --data DIR`` (8 parity images,
the target's own thresholds) into a temporary folder; the card gets ``cpu_builds``: per
target/precision, passed or the build's one-line error, with agreement and mIoU drop.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.machine import cpu_model
from edgeseg.publish import write_card, write_zoo_index
from edgeseg.targets import load_target
from edgeseg.zoo import get_card

CPU_TARGETS = ("openvino-cpu", "onnxruntime-cpu", "ncnn-cpu")


def check(name: str, data: Path, threads: int) -> dict:
    from edgeseg.build import build

    results = {}
    for target in CPU_TARGETS:
        for precision in load_target(target).precisions:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    out = build(name, target, precision=precision, out=Path(tmp) / "a", data=data, threads=threads)
                    p = json.loads((out / "manifest.json").read_text())["parity"]
                    results[f"{target}/{precision}"] = {"passed": bool(p["passed"]), "agreement": p.get("agreement"),
                                                        "miou_drop": p.get("miou_drop")}
                except EdgesegError as exc:
                    results[f"{target}/{precision}"] = {"passed": False, "error": str(exc).splitlines()[0]}
            r = results[f"{target}/{precision}"]
            print(f"{name} {target}/{precision}: {'passed' if r['passed'] else 'FAILED ' + r.get('error', '')}",
                  flush=True)
    return {"results": results, "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "hardware": f"{cpu_model()}, {threads} threads",
            "command": f"python tools/check_zoo_builds.py {name} --data {data} --threads {threads}"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    for name in args.names:
        card = get_card(name)
        card["cpu_builds"] = check(name, args.data, args.threads)
        write_card(card, repo / "edgeseg" / "zoo")
    write_zoo_index(repo / "docs" / "zoo.md")
    sys.exit(0)
