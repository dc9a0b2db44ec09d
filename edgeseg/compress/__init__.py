"""Model compression: NNCF int8 quantization (PTQ, accuracy-controlled PTQ, QAT), structured
channel pruning (torch-pruning) and NNCF unstructured pruning, with a per-run report.

This package is the library (quantizers, pruning, checkpoint state); the `edgeseg compress`
run with its report is :mod:`edgeseg.compress_run`, and loading a compressed checkpoint
back is :mod:`edgeseg.checkpoints`::

        from edgeseg.checkpoints import load_compressed
    report = compress("runs/camvid/best.pt", "data/camvid", qat=True, prune=0.3, epochs=1)
    model, info, ckpt = load_compressed("runs/compress/int8_qat.pt")

See docs/compress.md.
"""

from edgeseg.compress.nncf_setup import TARGETS, target_preset
from edgeseg.compress.common import Data, evaluate, finetune, recalibrate_bn
from edgeseg.compress.io import save_compressed
from edgeseg.compress.prune import prune_structured, prune_unstructured, resize_to_state_dict, strip_unstructured
from edgeseg.compress.quant import ptq, qat, restore, sensitivity

__all__ = ["TARGETS", "target_preset", "Data", "evaluate", "finetune", "recalibrate_bn",
           "save_compressed", "prune_structured",
           "prune_unstructured", "resize_to_state_dict", "strip_unstructured", "ptq",
           "qat", "restore", "sensitivity"]
