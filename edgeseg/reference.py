"""The PyTorch fp32 Predictor: the reference the build compares every artifact with.

``TorchPredictor.from_model(model, info, input_size)`` wraps a SegmentationModel with the
same pre/post-processing as the other runtimes (pad to ``input_size``, NCHW float32
logits); ``TorchPredictor(artifact_dir, manifest)`` loads ``files.model`` as a checkpoint.
"""

from __future__ import annotations

import numpy as np

from edgeseg.formats.manifest import make_manifest
from edgeseg.formats.predictor import Predictor


def reference_manifest(model, info, input_size) -> dict:
    """The manifest of the in-memory model: the same pre/post-processing as every artifact."""
    return make_manifest(model=model, info=info, profile=None, precision="fp32", input_size=input_size)


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
