"""Checkpoints: one self-describing file per model state.

A checkpoint holds the model's registry name and arguments, the dataset descriptor,
the input size it was trained at and the weights, so that ``edgeseg.checkpoints.load_model(path)``
rebuilds it with nothing else. Files are written to a temporary name and renamed,
so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeseg.data.info import DatasetInfo
from edgeseg.files import CHECKPOINT_FORMAT as FORMAT, CHECKPOINT_VERSION as VERSION
from edgeseg.files import atomic_write_bytes, atomic_write_text, file_sha256, load_checkpoint  # noqa: F401 (re-exported)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def make_checkpoint(model, info: DatasetInfo, input_size, **extra) -> dict:
    model = unwrap(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {"name": model.model_name, "num_classes": model.num_classes,
                  "kwargs": dict(getattr(model, "model_kwargs", {}))},
        "dataset": info.to_dict(),
        "input_size": list(input_size) if input_size else None,
        "state_dict": state,
        **extra,
    }


def save_checkpoint(ckpt: dict, path: Path) -> None:
    atomic_write_bytes(Path(path), lambda f: torch.save(ckpt, f))
