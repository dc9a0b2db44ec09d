"""``edgeseg predict``: class-index masks, colour masks and overlays for images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.images import image_size, imread, max_pixels
from edgeseg.data.info import DatasetInfo
from edgeseg.errors import DataError
from edgeseg.files import atomic_write_bytes


def read_rgb(path) -> np.ndarray:
    """An image file as uint8 RGB, or a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image '{path}' does not exist")
    return cv2.cvtColor(imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def colorize(mask: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """Class map -> RGB image with the dataset's colours (ignored / unknown ids black)."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: info.num_classes] = np.array(info.colors, np.uint8)
    return palette[mask.astype(np.uint8)]


def overlay(image_rgb: np.ndarray, color_mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return cv2.addWeighted(image_rgb, 1.0 - alpha, color_mask, alpha, 0.0)


# Weaker pairwise terms than dense_crf's defaults: on six CamVid *train* images with a
# CPU-trained bisenetv1 these raised mIoU (+0.008) where the defaults lowered it (-0.016).
CRF_SETTINGS = {"sxy_bilateral": 30, "srgb": 10, "compat_bilateral": 2, "compat_gaussian": 1}


def predict_image(model, info: DatasetInfo, image_rgb: np.ndarray, *, mode: str = "whole",
                  crf: bool = False, **opts) -> np.ndarray:
    """Class map (H, W) for one RGB image at its own resolution.

    ``mode`` is ``whole`` (padded to the stride, then cropped), ``tile`` or ``tta`` (see
    :mod:`edgeseg.inference`); ``crf`` refines the probabilities with a dense CRF.
    """
    return segment_image(model, info, image_rgb, mode=mode, crf=crf, **opts)[0]


def segment_image(model, info: DatasetInfo, image_rgb: np.ndarray, *, mode: str = "whole",
                  crf: bool = False, **opts) -> tuple[np.ndarray, np.ndarray]:
    """``(class map H x W uint8, probabilities C x H x W)``, optionally refined by a dense CRF."""
    from edgeseg.inference import infer_image

    classes, probs = infer_image(model, info, image_rgb, mode=mode, **opts)
    if crf:
        from edgeseg.classical.crf import dense_crf

        probs = dense_crf(probs, image_rgb, **CRF_SETTINGS)
        classes = probs.argmax(0).astype(np.uint8)
    return classes, probs


def write_png(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 array
        raise DataError(f"cannot encode '{path}'")
    atomic_write_bytes(path, lambda f: f.write(buf.tobytes()))


def _unique_stems(paths) -> list[str]:
    """Output stems, one per input: the file's stem, then ``stem-2``, ``stem-3``... for inputs
    that share it (a/x.png and b/x.jpg must not overwrite each other's outputs)."""
    used: set[str] = set()
    stems = []
    for p in paths:
        stem, n = p.stem, 1
        while stem in used:
            n += 1
            stem = f"{p.stem}-{n}"
        used.add(stem)
        stems.append(stem)
    return stems


# Peak memory per image pixel, measured on the zoo models (11 classes): whole-image inference
# 175-465 B (ENet, BiSeNetV1, DeepLabV3+ at 1024x1024), tiled 127 B (ENet, 3072x3072, 512 tiles).
WHOLE_BYTES_PER_PIXEL = 500


def tile_bytes_per_pixel(num_classes: int) -> int:
    """Tiled inference keeps the C x H x W probabilities of the whole image (float32, and their sum)."""
    return 12 * (num_classes + 1)


def available_memory() -> int | None:
    """MemAvailable in bytes (Linux), else None: no check where it cannot be known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(path, hw, info: DatasetInfo, mode: str = "whole", tiled: bool = False, batch: int = 1) -> None:
    """One line, before decoding, when inference on an image this large cannot fit in memory
    (``batch`` images of that size at once in whole-image mode, as eval's batches)."""
    free = available_memory()
    if free is None:
        return
    pixels = hw[0] * hw[1]
    tile_need = pixels * tile_bytes_per_pixel(info.num_classes)
    need = tile_need if (mode == "tile" or tiled) else pixels * WHOLE_BYTES_PER_PIXEL * batch
    if need <= free:
        return
    size = f"image '{path}' is {hw[0]}x{hw[1]}"
    if tile_need <= free:
        what = "whole-image inference" + (f" of {batch} such images at once" if batch > 1 else "")
        raise DataError(f"{size}: {what} needs about {need / 2**30:.1f} GB, more than the "
                        f"{free / 2**30:.1f} GB available: use --mode tile --tile 1024x1024 (one tile at a time, "
                        f"about {tile_need / 2**30:.1f} GB)")
    raise DataError(f"{size}: inference needs about {tile_need / 2**30:.1f} GB even in tiles, more than the "
                    f"{free / 2**30:.1f} GB available: downscale it or cut it into smaller images")


def check_dataset_memory(dataset, info: DatasetInfo, mode: str = "whole", tiled: bool = False,
                         batch: int = 1) -> None:
    """:func:`check_memory` for the largest image of a dataset, from the headers alone."""
    sizes = [(image_size(p), p) for p, _ in getattr(dataset, "samples", [])]
    if sizes:
        hw, path = max(sizes, key=lambda s: s[0][0] * s[0][1])
        check_memory(path, hw, info, mode, tiled, batch if mode == "whole" else 1)


def predict_files(model, info: DatasetInfo, images, out_dir, alpha: float = 0.5, **infer_opts) -> list[dict]:
    """Write ``<stem>_mask.png`` (class ids), ``<stem>_color.png`` and ``<stem>_overlay.png`` per image."""
    paths = [Path(p) for p in images]
    pixels = 0
    for p in paths:  # sizes from the headers: nothing is decoded that could not be segmented
        if not p.is_file():
            raise DataError(f"image '{p}' does not exist")
        hw = image_size(p)
        check_memory(p, hw, info, infer_opts.get("mode", "whole"), "tile" in infer_opts)
        pixels += hw[0] * hw[1]
    # every input decoded before any output is written; kept only while all of them together fit
    # the one-image budget, else decoded again when its turn comes (many large photos)
    keep = pixels <= max_pixels()
    decoded = [rgb if keep else None for rgb in (read_rgb(p) for p in paths)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    from edgeseg.progress import track

    for path, stem, rgb in track(list(zip(paths, _unique_stems(paths), decoded)), "predict"):
        rgb = rgb if rgb is not None else read_rgb(path)
        mask = predict_image(model, info, rgb, **infer_opts)
        color = colorize(mask, info)
        files = {"mask": out_dir / f"{stem}_mask.png", "color": out_dir / f"{stem}_color.png",
                 "overlay": out_dir / f"{stem}_overlay.png"}
        write_png(files["mask"], mask)
        write_png(files["color"], cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
        write_png(files["overlay"], cv2.cvtColor(overlay(rgb, color, alpha), cv2.COLOR_RGB2BGR))
        counts = np.bincount(mask.ravel(), minlength=info.num_classes)
        written.append({"image": str(path), **{k: str(v) for k, v in files.items()},
                        "classes": {info.classes[i]: round(float(c) / mask.size, 4)
                                    for i, c in enumerate(counts) if c}})
    return written
