"""Accuracy of an artifact on a labelled split: mIoU, per-class IoU, pixel accuracy, the
same for the fp32 source model in PyTorch (``TorchPredictor``), the change per class, and
flags for degenerate outputs (one class everywhere, an empty mask) whatever the mIoU."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeseg.errors import DataError, EdgesegError


def open_split(data, split: str, manifest: dict):
    """The dataset split (or the source's held-out validation images, where the data has no such
    split), checked against the artifact's classes (DataError otherwise)."""
    from edgeseg.data import available_splits
    from edgeseg.data.holdout import open_split as open_data_split, valid_holdout

    data = Path(data)
    if not data.exists():
        raise DataError(f"dataset folder '{data}' does not exist: give --data a dataset folder")
    ds = open_data_split(data, split, valid_holdout((manifest.get("source") or {}).get("holdout")))
    if ds is None:
        splits = available_splits(data)
        raise DataError(f"dataset '{data}' has no '{split}' split (splits: {', '.join(splits) or 'none'}): "
                        f"pick one with --split")
    classes = list(manifest.get("classes") or [])
    if list(ds.info.classes) != classes:
        raise DataError(f"dataset '{data}' has classes {list(ds.info.classes)} but the artifact was built for "
                        f"{classes}: bench it on data with the model's classes")
    if len(ds) == 0:
        raise DataError(f"split '{split}' of '{data}' has no images")
    return ds


def reference_predictor(manifest: dict, threads: int | None = None):
    """``(TorchPredictor of the fp32 source, None)`` or ``(None, why not)``."""
    from edgeseg.reference import TorchPredictor
    from edgeseg.checkpoints import load_model

    src = manifest.get("source") or {}
    name = src.get("zoo") or src.get("path")
    if not name:
        return None, "the manifest names no source checkpoint"
    if not src.get("zoo") and not Path(name).is_file():
        return None, f"source checkpoint '{name}' is not on this machine"
    try:
        model, info, _ = load_model(name)
    except EdgesegError as exc:
        return None, f"source '{name}' cannot be loaded ({exc})"
    return TorchPredictor.from_model(model, info, manifest["input"]["size"], threads=threads), None


def evaluate(predictor, ds, num_classes: int, ignore_index: int, class_names, max_images: int | None = None,
             images=None, crf: bool = False) -> dict:
    """Scores of ``predictor`` on ``ds`` (ConfusionMatrix.summary), the predicted-class histogram
    and the degenerate-output flags (edgeseg.metrics.output_flags)."""
    from edgeseg.metrics import output_flags, score

    hist = np.zeros(256, np.int64)
    counts = {"single": 0, "crf_seconds": 0.0}
    n = len(ds) if max_images is None else min(len(ds), int(max_images))

    def predict(img):
        if crf:
            from edgeseg.classical.crf import dense_crf
            from edgeseg.predict import CRF_SETTINGS

            _, probs = predictor.predict(img, return_probs=True)
            t0 = time.perf_counter()
            pred = dense_crf(probs, img, **CRF_SETTINGS).argmax(0).astype(np.uint8)
            counts["crf_seconds"] += time.perf_counter() - t0
        else:
            pred = predictor.predict(img)
        h = np.bincount(pred.ravel(), minlength=256)
        hist[:] += h[:256]
        counts["single"] += int(np.count_nonzero(h) <= 1)
        return np.minimum(pred, num_classes - 1) if pred.max(initial=0) >= num_classes else pred

    pairs = (images[i] if images is not None else ds.read(i) for i in range(n))
    cm = score(pairs, predict, num_classes, ignore_index, label=f"accuracy: {getattr(predictor, 'runtime', 'model')}",
               total=n)
    single, crf_seconds = counts["single"], counts["crf_seconds"]
    s = cm.summary(class_names)
    s["images"] = n
    s["predicted_pixels_per_class"] = {str(class_names[c]) if c < num_classes else str(c): int(v)
                                      for c, v in enumerate(hist) if v}
    s["single_class_images"] = single
    s["true_pixels_per_class"] = dict(zip(map(str, class_names), cm.matrix.sum(1).tolist()))
    s["flags"] = output_flags(hist, cm.matrix.sum(1), class_names=class_names, images=n,
                              single_class_images=single)
    if crf:
        s["crf_ms_per_image"] = 1000 * crf_seconds / max(1, n)
    return s


def accuracy_report(predictor, manifest: dict, data, split: str = "val", *, threads: int | None = None,
                    max_images: int | None = None, reference: bool = True, crf: bool = False) -> dict:
    """mIoU / per-class IoU / pixel accuracy of the artifact and of its fp32 source, the deltas and flags."""
    from edgeseg.metrics import classes_lost

    ds = open_split(data, split, manifest)
    classes = list(manifest["classes"])
    nc, ig = len(classes), int(manifest.get("ignore_index", 255))
    n = len(ds) if max_images is None else min(len(ds), int(max_images))
    pairs = [ds.read(i) for i in range(n)]
    art = evaluate(predictor, ds, nc, ig, classes, max_images=n, images=pairs, crf=crf)
    out = {"data": str(data), "split": split, "images": n, "miou": art["miou"], "crf": crf,
           "crf_ms_per_image": art.get("crf_ms_per_image"),
           "per_class_iou": art["per_class_iou"], "pixel_accuracy": art["pixel_accuracy"],
           "predicted_pixels_per_class": art["predicted_pixels_per_class"],
           "flags": [f["message"] for f in art["flags"] if f["kind"] != "collapsed"], "reference": None}
    collapsed = [c for f in art["flags"] if f["kind"] == "collapsed" for c in f["classes"]]
    if reference:
        ref, why = reference_predictor(manifest, threads)
        if ref is None:
            out["reference"] = {"available": False, "reason": why}
        else:
            r = evaluate(ref, ds, nc, ig, classes, max_images=n, images=pairs)
            delta = {c: (None if art["per_class_iou"][c] is None or r["per_class_iou"][c] is None
                         else art["per_class_iou"][c] - r["per_class_iou"][c]) for c in classes}
            out["reference"] = {"available": True, "runtime": "torch fp32", "source": (manifest.get("source") or {}).get("path"),
                                "miou": r["miou"], "per_class_iou": r["per_class_iou"],
                                "pixel_accuracy": r["pixel_accuracy"], "delta_per_class": delta,
                                "flags": [f["message"] for f in r["flags"]],
                                "delta_miou": None if art["miou"] is None or r["miou"] is None else art["miou"] - r["miou"]}
            # a class the artifact never predicts but its source finds is the artifact's failure (as
            # build's parity gate counts it); otherwise the model's. Not with --crf: the source is
            # scored without the CRF, which can remove small classes.
            lost = [] if crf else classes_lost(collapsed, r["predicted_pixels_per_class"], r["true_pixels_per_class"])
            if lost:
                out["flags"].append(f"collapsed class{'es' if len(lost) > 1 else ''}: {', '.join(lost)} never "
                                    f"predicted by the artifact, though its fp32 source predicts "
                                    f"{'them' if len(lost) > 1 else 'it'}")
            collapsed = [c for c in collapsed if c not in lost]
    out["warnings"] = [f"collapsed class{'es' if len(collapsed) > 1 else ''}: {', '.join(collapsed)} never predicted "
                       f"(common in the ground truth): the model has not learned {'them' if len(collapsed) > 1 else 'it'}"] \
        if collapsed else []
    return out


__all__ = ["accuracy_report", "open_split", "reference_predictor", "evaluate"]
