"""The PyTorch fp32 Predictor: the reference the build compares every artifact with.

``TorchPredictor.from_model(model, info, input_size)`` wraps a SegmentationModel with the
same pre/post-processing as the other runtimes (pad to ``input_size``, NCHW float32
logits); ``TorchPredictor(artifact_dir, manifest)`` loads ``files.model`` as a checkpoint.
"""

from __future__ import annotations

import numpy as np

from edgeseg.formats.predictor import FORMAT_VERSION, Predictor


def reference_manifest(model, info, input_size) -> dict:
    h, w = (int(v) for v in input_size)
    return {
        "format_version": FORMAT_VERSION, "format": "pytorch", "runtime": "torch", "precision": "fp32",
        "model": {"name": getattr(model, "model_name", type(model).__name__), "num_classes": int(model.num_classes),
                  "kwargs": dict(getattr(model, "model_kwargs", {}))},
        "classes": list(info.classes), "colors": [list(c) for c in info.colors],
        "ignore_index": int(info.ignore_index), "mean": list(info.mean), "std": list(info.std),
        "input": {"name": "input", "size": [h, w], "layout": "NCHW", "dtype": "float32", "quant": None, "fit": "pad"},
        "output": {"name": "logits", "layout": "NCHW", "kind": "logits", "dtype": "float32", "quant": None,
                   "size": [h, w]},
        "files": {},
    }


class TorchPredictor(Predictor):
    runtime = "torch"

    def __init__(self, artifact_dir, manifest, *, threads=None, device=None, model=None):
        super().__init__(artifact_dir, manifest, threads=threads, device=device)
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        if model is None:
            from edgeseg.checkpoints import load_model

            model = load_model(self.model_path())[0]
        self.torch_device = torch.device(device or "cpu")
        self.model = model.float().eval().to(self.torch_device)

    @classmethod
    def from_model(cls, model, info, input_size, *, threads=None, device=None) -> "TorchPredictor":
        return cls(None, reference_manifest(model, info, input_size), threads=threads, device=device, model=model)

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            y = self.model(torch.from_numpy(np.ascontiguousarray(x)).to(self.torch_device))
        return y.float().cpu().numpy()


PREDICTOR = TorchPredictor
