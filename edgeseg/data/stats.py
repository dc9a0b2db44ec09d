"""Dataset statistics: class pixel counts (for class weights and sanity checks)."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgeseg.errors import DataError

__all__ = ["class_pixel_counts"]


def _cache_key(dataset, num_classes: int) -> str:
    h = hashlib.sha1()
    h.update(f"{getattr(dataset, 'format', '')}|{dataset.root}|{dataset.split}|{num_classes}".encode())
    for _, m in dataset.samples:
        try:
            st = os.stat(m)
            h.update(f"{m}|{st.st_mtime_ns}|{st.st_size}\n".encode())
        except OSError:
            h.update(f"{m}|missing\n".encode())
    return h.hexdigest()


def class_pixel_counts(dataset, num_classes: int | None = None, *, cache: str | Path | None = None,
                       workers: int | None = None) -> np.ndarray:
    """Pixels of each class over every raw (untransformed) mask of ``dataset``.

    Ignore pixels (255) are not counted. Returns ``int64[num_classes]``. With ``cache``
    (a folder), the result is stored in a small JSON file keyed by the dataset's path,
    split and every mask's path, mtime and size, so a changed dataset is recounted.
    """
    if num_classes is None:
        num_classes = dataset.info.num_classes
    num_classes = int(num_classes)
    if not 0 < num_classes <= 255:
        raise DataError(f"num_classes must be in 1..255, got {num_classes}")
    cache_file = None
    if cache is not None:
        cache_file = Path(cache) / f"pixel-counts-{_cache_key(dataset, num_classes)}.json"
        if cache_file.is_file():
            try:
                counts = np.asarray(json.loads(cache_file.read_text())["counts"], dtype=np.int64)
                if counts.shape == (num_classes,):
                    return counts
            except (ValueError, KeyError, OSError):
                pass  # recount

    read_mask = getattr(dataset, "read_mask", None) or (lambda i: dataset.read(i)[1])

    def count(i: int) -> np.ndarray:
        m = read_mask(i)
        c = np.bincount(m.ravel(), minlength=256)
        if c[num_classes:255].any():
            bad = np.flatnonzero(c[num_classes:255]) + num_classes
            raise DataError(
                f"mask {dataset.samples[i][1]} has label values {bad.tolist()[:10]} >= num_classes "
                f"{num_classes}: fix the mask or num_classes"
            )
        return c[:num_classes].astype(np.int64)

    total = np.zeros(num_classes, dtype=np.int64)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # cv2 decoding releases the GIL
        for c in pool.map(count, range(len(dataset))):
            total += c
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"root": str(dataset.root), "split": dataset.split,
                                       "counts": total.tolist()}))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a cache we cannot write is not an error
    return total
