"""Write "your own data" folders from CamVid for the tutorial in docs/own-data.md.

    python tools/make_own_data.py binary  --camvid ../shared/data/camvid --out data/roads
    python tools/make_own_data.py palette --camvid ../shared/data/camvid --out data/streets

Both are what a user's data often looks like: one flat ``images/`` folder (JPEG) and one
``masks/`` folder (PNG), no splits, the file names keeping CamVid's video-sequence prefix
(``0016E5_07959``), from CamVid's train and val images together.

- ``binary``: drivable road (255) vs everything else (0), 0/255 masks.
- ``palette``: five classes as RGB colour masks with a ``palette.txt`` (``R G B name`` per
  line; CamVid's void pixels get the colour of the ``ignore`` line).

``--scale 0.5`` (the default) halves the 360x480 frames to 180x240 so the tutorial trains
in minutes on a laptop CPU. Everything is written to a temporary folder and renamed into
``--out`` at the end; an existing ``--out`` is refused.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

CAMVID_ROAD = 3
CAMVID_VOID = 11
# palette task: name, RGB colour, CamVid classes it takes (Sky 0, Building 1, Pole 2, Road 3,
# Pavement 4, Tree 5, SignSymbol 6, Fence 7, Car 8, Pedestrian 9, Bicyclist 10)
PALETTE = [
    ("background", (0, 0, 0), (0, 1, 2, 5, 6, 7)),
    ("road", (128, 64, 128), (3,)),
    ("sidewalk", (244, 35, 232), (4,)),
    ("vehicle", (0, 0, 142), (8,)),
    ("person", (220, 20, 60), (9, 10)),
]
IGNORE_COLOR = (255, 255, 255)


def camvid_pairs(camvid: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for split in ("train", "val"):
        for img in sorted((camvid / split).glob("*.png")):
            mask = camvid / f"{split}annot" / img.name
            if not mask.is_file():
                sys.exit(f"error: {img} has no label {mask}: give --camvid a CamVid (SegNet layout) folder")
            pairs.append((img, mask))
    if not pairs:
        sys.exit(f"error: no CamVid images under {camvid}/train and {camvid}/val: check --camvid")
    return pairs


def binary_mask(label: np.ndarray) -> np.ndarray:
    return np.where(label == CAMVID_ROAD, 255, 0).astype(np.uint8)


def palette_mask(label: np.ndarray) -> np.ndarray:
    """RGB colour mask (as BGR for cv2.imwrite)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:] = IGNORE_COLOR
    for _, rgb, ids in PALETTE:
        for i in ids:
            lut[i] = rgb
    return lut[label][..., ::-1]


def write(task: str, camvid: Path, out: Path, scale: float) -> int:
    out = out.resolve()
    if out.exists():
        sys.exit(f"error: {out} exists: remove it or give another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        pairs = camvid_pairs(camvid)
        for img_path, mask_path in pairs:
            image = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
            label = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
            if image is None or label is None:
                sys.exit(f"error: cannot read {img_path} or {mask_path}")
            if scale != 1.0:
                h, w = label.shape[:2]
                size = (round(w * scale), round(h * scale))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
            mask = binary_mask(label) if task == "binary" else palette_mask(label)
            cv2.imwrite(str(tmp / "images" / f"{img_path.stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(str(tmp / "masks" / f"{img_path.stem}.png"), mask)
        if task == "palette":
            lines = [f"{r} {g} {b} {name}" for name, (r, g, b), _ in PALETTE]
            lines.append("{} {} {} ignore".format(*IGNORE_COLOR))
            (tmp / "palette.txt").write_text("\n".join(lines) + "\n")
        tmp.chmod(0o755)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(pairs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=("binary", "palette"))
    ap.add_argument("--camvid", type=Path, default=Path("../shared/data/camvid"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scale", type=float, default=0.5, help="resize factor for images and masks [0.5]")
    a = ap.parse_args(argv)
    if not 0.05 <= a.scale <= 1.0:
        sys.exit(f"error: --scale must be between 0.05 and 1, got {a.scale}")
    n = write(a.task, a.camvid, a.out, a.scale)
    print(f"wrote {n} image/mask pairs to {a.out} ({a.task})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
