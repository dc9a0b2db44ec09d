"""Load any checkpoint or zoo name: float, pruned, NNCF-quantized or PT2E-quantized.

``load_model(path_or_zoo_name)`` gives ``(model, info, ckpt)``; :func:`rebuild` turns a
freshly created registry model into the architecture a compressed checkpoint was saved
from. It sits above :mod:`edgeseg.formats` because a PT2E-quantized checkpoint is a graph
of the LiteRT unit's quantizer.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeseg.compress.io import NNCF_HOOKS_PREFIX
from edgeseg.data.info import DatasetInfo
from edgeseg.errors import CheckpointError, DataError
from edgeseg.files import load_checkpoint


def model_from_checkpoint(ckpt: dict, source: str = "checkpoint"):
    """Rebuild the model of a loaded checkpoint (in eval mode) and its dataset descriptor."""
    from edgeseg.models import create_model

    spec = ckpt["model"]
    model = create_model(spec["name"], spec["num_classes"], **spec.get("kwargs", {}))
    if ckpt.get("pruning") or ckpt.get("quantization"):
        # Compressed checkpoints (edgeseg compress): pruned widths and/or NNCF quantizers.
        model = rebuild(model, ckpt)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        hint = ""
        if (ckpt.get("quantization") or {}).get("backend") == "pt2e":
            from edgeseg.formats.litert.pt2e import mismatch_hint

            hint = mismatch_hint(ckpt["quantization"])
        raise CheckpointError(f"{source}: weights do not fit model '{spec['name']}' ({first}){hint}") from exc
    _check_finite(ckpt["state_dict"], source)
    model.float().eval()
    try:
        return model, DatasetInfo.from_dict(ckpt["dataset"])
    except DataError as exc:  # its stats or colours: name the checkpoint, not only the dataset
        raise CheckpointError(f"{source}: {exc}") from exc


def _check_finite(state_dict: dict, source: str) -> None:
    """NaN or inf weights (a diverged run, a damaged file) would give every pixel the same class."""
    for key, t in state_dict.items():
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{source}: weight '{key}' holds NaN or inf values (a diverged training run or "
                                  f"a damaged file): use an earlier checkpoint or retrain")


def _data_facts(data):
    """``(descriptor, image size)`` of a dataset folder for an ONNX model, or None without one."""
    if not data:
        return None
    from edgeseg.data import available_splits, open_dataset

    splits = available_splits(data)
    if not splits:
        return None
    ds = open_dataset(data, "train" if "train" in splits else splits[0])
    size = tuple(ds.read(0)[0].shape[:2]) if len(ds) else None
    return ds.info, size


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
    """``(model, info, ckpt)`` from a checkpoint path, a zoo name or an ONNX file (run in ONNX
    Runtime, adapted with the options the CLI set: :mod:`edgeseg.formats.onnx_model`)."""
    from edgeseg.formats import onnx_model

    if onnx_model.is_onnx_source(name_or_path):
        return onnx_model.open_onnx(name_or_path, _data_facts(onnx_model.options().get("data")))
    ckpt = load_source(name_or_path, map_location)
    model, info = model_from_checkpoint(ckpt, str(name_or_path))
    return model, info, ckpt
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
        from edgeseg.formats.litert.pt2e import restore as restore_pt2e

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
    if (ckpt.get("quantization") or {}).get("backend") == "pt2e":
        raise CheckpointError(f"'{source}' was quantized for TFLite / the Edge TPU (edgeseg compress --target "
                              f"edgetpu): build it with --target coral, or compress the fp32 checkpoint for this "
                              f"target (--target cpu, npu or jetson)")
    plain = {**ckpt, "quantization": None,
             "state_dict": {k: v for k, v in ckpt["state_dict"].items() if not k.startswith(NNCF_HOOKS_PREFIX)}}
    return model_from_checkpoint(plain, source)


def load_compressed(source, map_location="cpu"):
    """``(model, info, ckpt)`` from a compressed (or plain) checkpoint path or zoo name.

    The same as :func:`load_model`, which calls :func:`rebuild`."""
    return load_model(source, map_location)


def is_compressed(ckpt: dict) -> bool:
    return bool(ckpt.get("quantization") or ckpt.get("pruning"))
