"""ncnn's Python binding running ``model.ncnn.param`` + ``model.ncnn.bin`` on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.formats.ncnn.plain import NcnnCall
from edgeseg.formats.predictor import Predictor


class NcnnPredictor(Predictor):
    runtime = "ncnn"

    def __init__(self, artifact_dir: Path, manifest: dict, *, threads=None, device=None):
        super().__init__(artifact_dir, manifest, threads=threads, device=device)
        ncnn = require("ncnn", "ncnn", "the ncnn runtime")
        if str(self.device or "cpu").lower() != "cpu":
            raise ConfigError(f"ncnn runs here on the CPU only, not on '{self.device}' (edgeseg does not "
                              f"enable ncnn's Vulkan GPU path)")
        if self.input_layout != "NCHW":
            raise ConfigError("manifest: an ncnn artifact takes NCHW input")
        self.device = "cpu"
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        if threads:
            self.net.opt.num_threads = int(threads)
        if self.net.load_param(str(self.model_path())) != 0 or self.net.load_model(str(self.model_path("weights"))) != 0:
            raise ConfigError(f"artifact '{artifact_dir}': ncnn cannot load '{manifest['files']['model']}' / "
                              f"'{manifest['files'].get('weights')}': the artifact is damaged; rebuild it")
        self.input_blob = manifest["input"].get("name") or "in0"
        self.output_blob = manifest["output"].get("name") or "out0"
        # the same call the remote bench's runner makes on a device
        self.call = NcnnCall(self.net, ncnn, self.input_blob, self.output_blob)

    def execution(self) -> dict:
        weights = (self.manifest.get("ncnn") or {}).get("weights")
        return {"device": "cpu", "threads": int(self.net.opt.num_threads), "weights": weights,
                "inference_precision": None}

    def infer(self, x: np.ndarray) -> np.ndarray:
        try:
            self.call.set_input(x)
            self.call.run()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return self.call.output()


PREDICTOR = NcnnPredictor
