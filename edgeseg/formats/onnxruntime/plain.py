"""ONNX Runtime with nothing but onnxruntime and numpy: the device half of a remote bench
(appended to :mod:`edgeseg.formats.runner_core`); it imports nothing from edgeseg."""

import os

import numpy as np


class OrtCall:
    kind = "onnxruntime InferenceSession.run()"

    def __init__(self, session):
        self.session, self.name, self.x, self.y = session, session.get_inputs()[0].name, None, None

    def set_input(self, x):
        self.x = np.ascontiguousarray(x)

    def run(self):
        self.y = self.session.run(None, {self.name: self.x})[0]

    def output(self):
        return self.y


def load(folder, manifest, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
    path = os.path.join(folder, manifest["files"]["model"])
    return OrtCall(ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]))


def versions():
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__}
