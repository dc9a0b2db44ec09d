"""Files edgeseg writes and reads, safely: atomic writes, hashes, and the checkpoint loader
that takes tensors and plain data only (a stranger's .pt file cannot run code).

The lowest layer: everything may use it, it uses only torch and edgeseg.errors.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

from edgeseg.errors import CheckpointError

#: the header every edgeseg checkpoint carries, and the newest version this edgeseg reads
CHECKPOINT_FORMAT = "edgeseg-checkpoint"
CHECKPOINT_VERSION = 1


def cache_dir() -> Path:
    """``$EDGESEG_CACHE``, else ``$XDG_CACHE_HOME/edgeseg`` (``~/.cache/edgeseg``): the demo's
    artifacts, fit's measurements, doctor's precision probes."""
    env = os.environ.get("EDGESEG_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "edgeseg"


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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(path, map_location="cpu") -> dict:
    import torch

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
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"'{path}' is not an edgeseg checkpoint (no '{CHECKPOINT_FORMAT}' header): "
            f"use a checkpoint written by `edgeseg train`"
        )
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint '{path}' has format version {ckpt['version']}, newer than this edgeseg "
                              f"understands ({CHECKPOINT_VERSION}): upgrade edgeseg")
    return ckpt


#: the keys public checkpoints wrap a state dict in ({"state_dict": {...}}, {"model": {...}})
STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "params")


def load_state_dict_file(path) -> dict:
    """A plain state dict (name -> tensor) from a ``.pt`` / ``.pth`` (tensors and plain data only,
    as edgeseg's own checkpoints) or ``.safetensors`` file; one wrapper level (``state_dict``,
    ``model``...) and DataParallel's ``module.`` prefix are taken off."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"'{path}' is not a readable safetensors file ({str(exc)[:120]})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            found = re.search(r"GLOBAL ([\w.]+)", str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
            what = (f"holds Python objects ({found.group(1)}), which edgeseg does not unpickle (that can run code): "
                    f"save model.state_dict() or a .safetensors file" if found else
                    f"cannot be read ({type(exc).__name__}): it is corrupt or not a PyTorch file")
            raise CheckpointError(f"weights file '{path}' {what}") from None
    for key in STATE_DICT_WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict) and not isinstance(state[key], torch.Tensor):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file '{path}' is not a state dict (a mapping of names to tensors): save "
                              f"model.state_dict()")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


class FolderTaken(OSError):
    """The output folder was written by someone else while a staged folder was being filled."""


@contextlib.contextmanager
def staged_folder(out, *, replace: bool = False, label: str = "tmp"):
    """A temporary folder beside ``out`` to fill; it becomes ``out`` only when the block ends
    without an error (anything raised, Ctrl-C included, removes it and leaves ``out`` as it was).

    ``replace``: an existing ``out`` is swapped out only at that moment, so a failed run never
    loses the old one. Without it, a non-empty ``out`` that appeared meanwhile raises
    :class:`FolderTaken` (rename(2) onto a non-empty folder fails) and is never overwritten.
    The folder gets the permissions a plain mkdir would (mkdtemp makes it private)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{label}-", dir=out.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if out.exists() and replace:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, out)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
                raise FolderTaken(exc.errno, "written by another run meanwhile", str(out)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

