"""ncnn with nothing but its Python binding and numpy: the device half of a remote bench
(appended to :mod:`edgeseg.formats.runner_core`); it imports nothing from edgeseg."""

import os

import numpy as np


class NcnnCall:
    kind = "ncnn Extractor.input() + extract()"

    def __init__(self, net, ncnn, blob_in, blob_out):
        self.net, self.ncnn, self.blob_in, self.blob_out = net, ncnn, blob_in, blob_out
        self.mat, self.y = None, None

    def set_input(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"ncnn: expected one image 1 x 3 x H x W, got {x.shape}")
        # clone(): ncnn.Mat(array) borrows the array's memory, which must not go away under it
        self.mat = self.ncnn.Mat(x[0]).clone()

    def run(self):
        with self.net.create_extractor() as ex:
            if ex.input(self.blob_in, self.mat) != 0:
                raise ValueError(f"ncnn: the graph has no input blob '{self.blob_in}': rebuild the artifact")
            ret, out = ex.extract(self.blob_out)
            if ret != 0:
                raise ValueError(f"ncnn: extracting '{self.blob_out}' failed ({ret}): rebuild the artifact")
            self.y = np.array(out, dtype=np.float32, copy=True)[None]

    def output(self):
        return self.y


def load(folder, manifest, threads):
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    if threads:
        net.opt.num_threads = int(threads)
    files = manifest["files"]
    if net.load_param(os.path.join(folder, files["model"])) or net.load_model(os.path.join(folder, files["weights"])):
        raise RuntimeError("ncnn cannot load the artifact's param/bin files")
    return NcnnCall(net, ncnn, manifest["input"].get("name") or "in0", manifest["output"].get("name") or "out0")


def versions():
    import ncnn

    return {"ncnn": getattr(ncnn, "__version__", "?")}
