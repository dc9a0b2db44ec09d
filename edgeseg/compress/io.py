"""Compressed checkpoints: the ordinary edgeseg checkpoint plus two optional keys.

* ``"quantization": {"nncf_config": nncf.torch.get_config(model), "target": ..., ...}`` --
  the state dict then holds the quantizer parameters too; :func:`rebuild` re-inserts
  the quantizers with ``nncf.torch.load_from_config`` (no calibration data needed).
  ``"quantization": {"backend": "pt2e", "input_size": ..., ...}`` (``--target edgetpu``) --
  the state dict is a PT2E graph's (:mod:`edgeseg.compress.pt2e`); :func:`rebuild`
  re-creates that graph.
* ``"pruning": {"mode": "structured", "ratio": ..., "channels": {...}}`` -- layer widths
  differ from the registry model's; :func:`rebuild` resizes the layers to the state dict
  (:func:`edgeseg.compress.prune.resize_to_state_dict`).

``load_compressed(path_or_zoo_name)`` returns ``(model, info, ckpt)`` like
``edgeseg.train.checkpoint.load_model`` and also accepts plain checkpoints.

``edgeseg/train/checkpoint.py::model_from_checkpoint`` calls :func:`rebuild` between
``create_model(...)`` and ``load_state_dict(...)``, so ``load_model`` (and so ``edgeseg
build``, ``eval``, ``bench``) reads these files too. :func:`float_model` drops the
quantizers for exporters that quantize with their own tool.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeseg.errors import CheckpointError

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


def rebuild(model, ckpt: dict):
    """Turn a freshly created registry model into the architecture the checkpoint's state
    dict was saved from (pruned widths, NNCF quantizers). Load the state dict afterwards."""
    q = ckpt.get("quantization")
    if ckpt.get("pruning"):
        from edgeseg.compress.prune import resize_to_state_dict

        if q and q.get("backend") == "pt2e":  # the graph's state dict has other names: use the float shapes
            shapes = {k: torch.empty(v, device="meta") for k, v in (q.get("float_shapes") or {}).items()}
            resize_to_state_dict(model, shapes)
        else:
            resize_to_state_dict(model, ckpt["state_dict"])
    if q and q.get("backend") == "pt2e":
        from edgeseg.compress.pt2e import restore as restore_pt2e

        return restore_pt2e(model.eval(), q)
    if q:
        if "nncf_config" not in q:
            raise CheckpointError("the checkpoint says it is quantized but holds no NNCF config: re-run "
                                  "`edgeseg compress`")
        from edgeseg.compress.quant import restore

        model = restore(model.eval(), q["nncf_config"])
    return model


def float_model(ckpt: dict, source: str = "checkpoint"):
    """The floating-point model of a quantized checkpoint: its (QAT fine-tuned) weights and
    pruned widths without the NNCF quantizers, for exporters that quantize with their own
    tool (TFLite's PT2E cannot take NNCF quantizers). Returns ``(model, info)``."""
    from edgeseg.train.checkpoint import model_from_checkpoint

    if (ckpt.get("quantization") or {}).get("backend") == "pt2e":
        raise CheckpointError(f"'{source}' was quantized for TFLite / the Edge TPU (edgeseg compress --target "
                              f"edgetpu): build it with --target coral, or compress the fp32 checkpoint for this "
                              f"target (--target cpu, npu or jetson)")
    plain = {**ckpt, "quantization": None,
             "state_dict": {k: v for k, v in ckpt["state_dict"].items() if not k.startswith(NNCF_HOOKS_PREFIX)}}
    return model_from_checkpoint(plain, source)


def load_compressed(source, map_location="cpu"):
    """``(model, info, ckpt)`` from a compressed (or plain) checkpoint path or zoo name.

    The same as :func:`edgeseg.train.checkpoint.load_model`, which calls :func:`rebuild`."""
    from edgeseg.train.checkpoint import load_model

    return load_model(source, map_location)


def is_compressed(ckpt: dict) -> bool:
    return bool(ckpt.get("quantization") or ckpt.get("pruning"))
