"""Model compression: NNCF int8 quantization (PTQ, accuracy-controlled PTQ, QAT), structured
channel pruning (torch-pruning) and NNCF unstructured pruning, with a per-run report.

Entry points::

    from edgeseg.compress import compress, load_compressed
    report = compress("runs/camvid/best.pt", "data/camvid", qat=True, prune=0.3, epochs=1)
    model, info, ckpt = load_compressed("runs/compress/int8_qat.pt")

See docs/compress.md.
"""

from edgeseg.compress._nncf import TARGETS, target_preset
from edgeseg.compress.api import compress
from edgeseg.compress.common import Data, evaluate, finetune, recalibrate_bn
from edgeseg.compress.io import is_compressed, load_compressed, rebuild, save_compressed
from edgeseg.compress.prune import prune_structured, prune_unstructured, resize_to_state_dict, strip_unstructured
from edgeseg.compress.quant import ptq, ptq_accuracy_control, qat, restore, sensitivity

__all__ = ["TARGETS", "target_preset", "compress", "Data", "evaluate", "finetune", "recalibrate_bn",
           "is_compressed", "load_compressed", "rebuild", "save_compressed", "prune_structured",
           "prune_unstructured", "resize_to_state_dict", "strip_unstructured", "ptq", "ptq_accuracy_control",
           "qat", "restore", "sensitivity"]
