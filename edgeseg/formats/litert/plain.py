"""A LiteRT / tflite-runtime interpreter with nothing but it and numpy: the device half of a
remote bench (appended to :mod:`edgeseg.formats.runner_core`); it imports nothing from edgeseg.
On a Coral board the compiled ``*_edgetpu.tflite`` runs on the Edge TPU where libedgetpu loads."""

import os

import numpy as np


def _interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    except ImportError:
        from tflite_runtime.interpreter import Interpreter, load_delegate  # older devices
    return Interpreter, load_delegate


class TfliteCall:
    kind = "litert Interpreter.invoke()"

    def __init__(self, it):
        self.it = it
        self.inp, self.out = it.get_input_details()[0], it.get_output_details()[0]

    def set_input(self, x):
        self.it.set_tensor(self.inp["index"], np.ascontiguousarray(x, dtype=self.inp["dtype"]))

    def run(self):
        self.it.invoke()

    def output(self):
        return np.array(self.it.get_tensor(self.out["index"]), copy=True)


def load(folder, manifest, threads):
    Interpreter, load_delegate = _interpreter()
    files = manifest["files"]
    kwargs = {"model_path": os.path.join(folder, files["model"])}
    if "edgetpu_model" in files:
        try:
            kwargs = {"model_path": os.path.join(folder, files["edgetpu_model"]),
                      "experimental_delegates": [load_delegate("libedgetpu.so.1")]}
        except (OSError, ValueError):
            pass  # no Edge TPU here: the CPU file
    if threads:
        kwargs["num_threads"] = int(threads)
    it = Interpreter(**kwargs)
    it.allocate_tensors()
    return TfliteCall(it)


def versions():
    try:
        import ai_edge_litert

        return {"ai-edge-litert": getattr(ai_edge_litert, "__version__", "?")}
    except ImportError:
        import tflite_runtime

        return {"tflite-runtime": getattr(tflite_runtime, "__version__", "?")}
