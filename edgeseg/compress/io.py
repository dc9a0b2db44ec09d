"""Compressed checkpoints: the ordinary edgeseg checkpoint plus two optional keys.

* ``"quantization": {"nncf_config": nncf.torch.get_config(model), "target": ..., ...}`` --
  the state dict then holds the quantizer parameters too; :func:`rebuild` re-inserts
  the quantizers with ``nncf.torch.load_from_config`` (no calibration data needed).
  ``"quantization": {"backend": "pt2e", "input_size": ..., ...}`` (``--target edgetpu``) --
  the state dict is a PT2E graph's (:mod:`edgeseg.formats.litert.pt2e`); :func:`rebuild`
  re-creates that graph.
* ``"pruning": {"mode": "structured", "ratio": ..., "channels": {...}}`` -- layer widths
  differ from the registry model's; :func:`rebuild` resizes the layers to the state dict
  (:func:`edgeseg.compress.prune.resize_to_state_dict`).

Reading them back (pruned widths, NNCF or PT2E quantizers re-inserted) is
:mod:`edgeseg.checkpoints`, a layer above the formats, since a PT2E graph belongs to the
LiteRT unit.
"""

from __future__ import annotations

from pathlib import Path


#: State-dict prefix of NNCF 3.x's inserted modules (quantizers, pruning masks).
NNCF_HOOKS_PREFIX = "__nncf_hooks."


def save_compressed(model, info, input_size, path, *, quantization: dict | None = None,
                    pruning: dict | None = None, **extra) -> Path:
    from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

    if quantization is not None and quantization.get("backend") == "pt2e":
        quantization = {**quantization, **model.quantization_entry()}
    elif quantization is not None:
        from edgeseg.compress.quant import nncf_config

        quantization = {**quantization, "backend": "nncf", "nncf_config": nncf_config(model)}
    ckpt = make_checkpoint(model, info, input_size, **extra)
    if quantization is not None:
        ckpt["quantization"] = quantization
    if pruning is not None:
        ckpt["pruning"] = pruning
    save_checkpoint(ckpt, Path(path))
    return Path(path)
