"""Checkpoints: one self-describing file per model state.

A checkpoint holds the model's registry name and arguments, the dataset descriptor,
the input size it was trained at and the weights, so that ``load_model(path)``
rebuilds it with nothing else. Files are written to a temporary name and renamed,
so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch

from edgeseg.data.info import DatasetInfo
from edgeseg.errors import CheckpointError

FORMAT = "edgeseg-checkpoint"
VERSION = 1


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it into place.

    Any failure (a folder at ``path``, an unwritable place, a full disk) removes the temp file
    and raises an OSError naming ``path`` itself, which the CLI reports in one line."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # mkstemp makes the file private; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except RuntimeError as exc:  # torch.save reports a failed write (a full disk) as a RuntimeError
        Path(tmp).unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or ["write failed"])[0][:200]
        raise OSError(errno.EIO, f"writing failed ({first}); is the disk full?", str(path)) from exc
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist: give the path of a .pt file written by `edgeseg train`")
    try:
        # weights_only: tensors and plain data only. A pickled object in a .pt file runs code when
        # it is loaded; edgeseg's own checkpoints hold none (NNCF's config is stored as plain data).
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # torch names the class or function the file asked for ("... GLOBAL posix.system ...")
        found = re.search(r"GLOBAL ([\w.]+)", str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
        if found:
            raise CheckpointError(
                f"checkpoint '{path}' holds Python objects ({found.group(1)}), not only tensors and plain data: edgeseg does "
                f"not load those, since unpickling them can run code. If it is an older edgeseg checkpoint from "
                f"a source you trust, convert it once with `python tools/upgrade_checkpoint.py {path}`"
            ) from None
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({type(exc).__name__}): the file is corrupt or not a "
            f"PyTorch file; re-run training or download it again"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is not an edgeseg checkpoint (no '{FORMAT}' header): "
            f"use a checkpoint written by `edgeseg train`"
        )
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"checkpoint '{path}' has format version {ckpt['version']}, newer than this edgeseg "
                              f"understands ({VERSION}): upgrade edgeseg")
    return ckpt


def model_from_checkpoint(ckpt: dict, source: str = "checkpoint"):
    """Rebuild the model of a loaded checkpoint (in eval mode) and its dataset descriptor."""
    from edgeseg.models import create_model

    spec = ckpt["model"]
    model = create_model(spec["name"], spec["num_classes"], **spec.get("kwargs", {}))
    if ckpt.get("pruning") or ckpt.get("quantization"):
        # Compressed checkpoints (edgeseg compress): pruned widths and/or NNCF quantizers.
        from edgeseg.compress.io import rebuild

        model = rebuild(model, ckpt)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        hint = ""
        if (ckpt.get("quantization") or {}).get("backend") == "pt2e":
            from edgeseg.compress.pt2e import mismatch_hint

            hint = mismatch_hint(ckpt["quantization"])
        raise CheckpointError(f"{source}: weights do not fit model '{spec['name']}' ({first}){hint}") from exc
    model.float().eval()
    return model, DatasetInfo.from_dict(ckpt["dataset"])


def load_source(name_or_path, map_location="cpu") -> dict:
    """A checkpoint dict from a file path or a zoo name (e.g. ``bisenetv1-camvid``)."""
    path = Path(name_or_path)
    if not path.is_file() and path.suffix != ".pt" and len(path.parts) == 1:
        from edgeseg import zoo

        if zoo.is_zoo_name(str(name_or_path)):
            return zoo.load_zoo_checkpoint(str(name_or_path), map_location=map_location)
        zoo.get_card(str(name_or_path))  # raises, listing the zoo models
    return load_checkpoint(path, map_location)


def load_model(name_or_path, map_location="cpu"):
    """``(model, info, ckpt)`` from a checkpoint path or a zoo name."""
    ckpt = load_source(name_or_path, map_location)
    model, info = model_from_checkpoint(ckpt, str(name_or_path))
    return model, info, ckpt
