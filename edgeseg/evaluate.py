"""``edgeseg eval``: score a checkpoint on a dataset split with the streaming metrics."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from edgeseg.errors import ConfigError
from edgeseg.checkpoints import load_model
from edgeseg.predict import check_dataset_memory
from edgeseg.files import atomic_write_text
from edgeseg.train.trainer import check_dataset, evaluate_model, pad_collate, resolve_device


def evaluate(checkpoint, data, split: str = "val", *, batch_size: int = 4, device: str = "cpu",
             data_format: str = "auto", workers: int = 0, boundary_tolerance: int | None = None,
             mode: str = "whole", crf: bool = False, **infer_opts) -> dict:
    """Metrics of ``checkpoint`` on ``data/split`` as a JSON-able dict.

    Images are padded (never resized) to the model's stride; padded pixels are ignored,
    so the numbers are those of the original resolution. ``mode`` (tile, tta) and ``crf``
    select the inference of :func:`edgeseg.predict.segment_image`, image by image.
    """
    from edgeseg.data import build_eval_transform
    from edgeseg.data.holdout import holdout_of
    from edgeseg.metrics import boundary_f1

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if workers < 0:
        raise ConfigError(f"--workers must be 0 (load in the main process) or more, got {workers}")
    model, info, ckpt = load_model(checkpoint)
    dataset, held_out = _open(data, split, data_format, ckpt)
    forced = held_out and holdout_of(ckpt).get("forced")
    info.check_compatible(dataset.info, f"dataset '{data}'")
    dataset.info = info  # the same classes; the model's own normalisation (a model of your own may differ)
    check_dataset_memory(dataset, info, mode, "tile" in infer_opts, batch_size)  # headers, before decoding
    check_dataset(dataset, f"{data}/{split}")
    dataset.transform = build_eval_transform(divisor=model.size_divisor, ignore_index=info.ignore_index)
    dev = resolve_device(device)
    model.to(dev)
    if mode != "whole" or crf:
        return _evaluate_per_image(model, info, dataset, checkpoint, data, split, mode, crf, infer_opts)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=partial(pad_collate, ignore_index=info.ignore_index, divisor=model.size_divisor))
    from edgeseg.progress import track

    t0 = time.perf_counter()
    cm = evaluate_model(model, track(loader, f"eval {split}", len(loader)), info.num_classes, info.ignore_index, dev)
    elapsed = time.perf_counter() - t0
    result = {
        "checkpoint": str(checkpoint),
        "model": model.model_name,
        "data": str(data),
        "split": split,
        "images": len(dataset),
        **cm.summary(info.classes),
        "flags": confusion_flags(cm, info.classes),
        "seconds": round(elapsed, 3),
    }
    if held_out:
        result["held_out"] = ("the images the checkpoint's training held out in place of the dataset's own split "
                              "(--holdout-val)" if forced else
                              "the images the checkpoint's training held out (the dataset has no such split)")
    if boundary_tolerance is not None:
        scores = []
        with torch.no_grad():
            for images, masks in loader:
                pred = model(images.to(dev)).argmax(1).cpu().numpy()
                for p, m in zip(pred, masks.numpy()):
                    scores.append(boundary_f1(p, m, tolerance=boundary_tolerance, num_classes=info.num_classes,
                                              ignore_index=info.ignore_index))
        result["boundary_f1"] = float(sum(scores) / len(scores))
        result["boundary_tolerance_px"] = boundary_tolerance
    return result


def _open(data, split: str, data_format: str, ckpt: dict):
    """``split`` of ``data``; for a dataset without it, the images the checkpoint's training held out."""
    from edgeseg.data import available_splits, open_dataset
    from edgeseg.data.holdout import held_out, holdout_of, open_split

    holdout = holdout_of(ckpt)
    if holdout is None:
        return open_dataset(data, split, fmt=data_format), False
    ds = open_split(data, split, holdout, fmt=data_format)
    if ds is None:
        raise ConfigError(f"dataset '{data}' has no split '{split}' (splits: "
                          f"{', '.join(available_splits(data, data_format)) or 'none'}, and '{holdout.get('split', 'val')}' "
                          f"held out in training): pick one with --split")
    return ds, held_out(data, split, holdout, fmt=data_format)


def confusion_flags(cm, class_names) -> list[str]:
    """Degenerate-output warnings from a confusion matrix (labelled pixels only)."""
    from edgeseg.metrics import output_flags

    return [f["message"] for f in output_flags(cm.matrix.sum(0), cm.matrix.sum(1), class_names=class_names)]


def write_json(result: dict, path) -> None:
    atomic_write_text(Path(path), json.dumps(result, indent=2) + "\n")


def _evaluate_per_image(model, info, dataset, checkpoint, data, split, mode, crf, infer_opts) -> dict:
    from edgeseg.metrics import score
    from edgeseg.predict import segment_image

    t0 = time.perf_counter()
    cm = score((dataset.read(i) for i in range(len(dataset))),
               lambda image: segment_image(model, info, image, mode=mode, crf=crf, **infer_opts)[0],
               info.num_classes, info.ignore_index, label=f"eval {split} ({mode})", total=len(dataset))
    elapsed = time.perf_counter() - t0
    return {"checkpoint": str(checkpoint), "model": model.model_name, "data": str(data), "split": split,
            "images": len(dataset), "mode": mode, "crf": crf, **cm.summary(info.classes),
            "flags": confusion_flags(cm, info.classes),
            "seconds": round(elapsed, 3), "ms_per_image": round(1000 * elapsed / max(1, len(dataset)), 1)}
