"""A LiteRT / tflite-runtime interpreter with nothing but it and numpy: the device half of a
remote bench (appended to :mod:`edgeseg.formats.runner_core`); it imports nothing from edgeseg.
On a Coral board the compiled ``*_edgetpu.tflite`` runs on the Edge TPU where libedgetpu loads."""

import os
import platform

import numpy as np

EDGETPU_LIBS = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


def interpreter():
    """(Interpreter, load_delegate) from ai_edge_litert, else tflite_runtime (older devices);
    ImportError where neither is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    except ImportError:
        from tflite_runtime.interpreter import Interpreter, load_delegate
    return Interpreter, load_delegate


def edgetpu_delegate(load_delegate):
    """The Edge TPU delegate, or None when its library cannot be loaded here."""
    try:
        return load_delegate(EDGETPU_LIBS.get(platform.system(), "libedgetpu.so.1"))
    except (ValueError, OSError, RuntimeError):
        return None


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
    Interpreter, load_delegate = interpreter()
    files = manifest["files"]
    kwargs = {"model_path": os.path.join(folder, files["model"])}
    delegate = edgetpu_delegate(load_delegate) if "edgetpu_model" in files else None
    if delegate is not None:  # else no Edge TPU here: the CPU file
        kwargs = {"model_path": os.path.join(folder, files["edgetpu_model"]), "experimental_delegates": [delegate]}
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
