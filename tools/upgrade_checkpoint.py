"""Convert an older edgeseg checkpoint that pickled Python objects into plain data, once.

    python tools/upgrade_checkpoint.py FILE.pt [--out NEW.pt]     # default: replace FILE.pt

edgeseg now loads every checkpoint with ``torch.load(weights_only=True)``: tensors, numbers,
strings, lists, tuples and dicts only, because unpickling anything else can run code. Older
checkpoints held two kinds of objects: NNCF's ``QuantizationScheme`` enum inside the QAT
config (``edgeseg compress --qat/--ptq``), and numpy's random state in ``last.pt``. This tool
opens FILE with ``weights_only=False`` -- **only run it on a file you trust**, it is exactly
the unpickling edgeseg refuses to do -- rewrites those parts as plain data, checks that the
result loads with ``weights_only=True`` and rebuilds the same model (same state dict), and
writes it atomically. Needs the extra that wrote the file (``openvino`` for NNCF).
"""

from __future__ import annotations

import argparse
import enum
import sys
from pathlib import Path

import numpy as np
import torch

from edgeseg.compress.quant import config_to_plain
from edgeseg.train.checkpoint import FORMAT, load_checkpoint, save_checkpoint


def plain(obj):
    """numpy arrays / scalars and NNCF enums as tensors, numbers and tagged dicts."""
    if isinstance(obj, enum.Enum):
        return config_to_plain(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.astype(np.int64) if obj.dtype == np.uint32 else obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj


def upgrade(ckpt: dict) -> dict:
    ckpt = plain(ckpt)
    rng = (ckpt.get("train_state") or {}).get("rng") or {}
    if isinstance(rng.get("numpy"), tuple):  # np.random.get_state() -> the list the trainer stores now
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        rng["numpy"] = [kind, keys, int(pos), int(has_gauss), float(cached)]
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="where to write (default: replace the input)")
    args = ap.parse_args()
    src, out = args.checkpoint, args.out or args.checkpoint
    old = torch.load(src, map_location="cpu", weights_only=False)  # the user vouches for this file
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        sys.exit(f"error: '{src}' is not an edgeseg checkpoint (no '{FORMAT}' header)")
    new = upgrade(old)
    tmp = out.with_name(f".{out.name}.upgrade-check.pt")
    try:
        save_checkpoint(new, tmp)
        reloaded = load_checkpoint(tmp)  # weights_only=True: raises if anything is left
        same = all(torch.equal(reloaded["state_dict"][k], v) for k, v in old["state_dict"].items())
        if not same or set(reloaded["state_dict"]) != set(old["state_dict"]):
            sys.exit(f"error: the upgraded state dict of '{src}' differs from the original; nothing written")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {out}: loads with weights_only=True")


if __name__ == "__main__":
    main()
