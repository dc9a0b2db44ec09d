"""The Predictor contract shared by every runtime (``edgeseg.formats.load_predictor`` picks one).

An artifact folder holds ``manifest.json`` and the model files. A Predictor subclass
(one per format unit, its ``runtime`` module's ``PREDICTOR``) implements only :meth:`Predictor.infer`:
the model call on an input already in the model's layout, dtype and size. The base class
does everything else from the manifest, identically for every runtime:

* :meth:`preprocess` -- uint8 RGB HxWx3 -> model input: pad bottom/right with the mean
  colour to ``input.size`` (``fit: pad``; images larger than the size are first scaled
  down keeping their aspect) or resize (``fit: resize``), normalise with mean/std,
  NCHW/NHWC, batch dim, cast or quantise (``input.quant`` = {scale, zero_point}).
* :meth:`postprocess` -- raw output -> class map HxW uint8 at the image's size:
  dequantise, NHWC -> CHW, upsample when the output is smaller than the input,
  argmax (``output.kind: logits``; ``classes`` = the model did it), crop / resize back.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.transforms import MEAN_RGB_U8, resize_hwc
from edgeseg.formats.manifest import FORMAT_VERSION, MANIFEST, read_manifest  # noqa: F401 (re-exported)
# the pre-processing a remote device runs too: one copy, in the self-contained runner
from edgeseg.formats.runner_core import INT_DTYPES, cast_input, fit_image, norm_coefficients, normalize, quantize  # noqa: F401 (quantize re-exported)
from edgeseg.errors import ConfigError, DataError, EdgesegError




def dequantize(q: np.ndarray, quant: dict) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(quant["zero_point"])) * np.float32(quant["scale"])).astype(np.float32)


class ModelCall:
    """One predictor's bare inference call: ``set_input(x)``, ``run()``, ``output()``. A runtime
    overrides it where its own call skips work :meth:`Predictor.infer` does per call."""

    kind = "predictor.infer"

    def __init__(self, predictor):
        self.p = predictor
        self._x = None
        self._y = None

    def set_input(self, x: np.ndarray) -> None:
        self._x = np.ascontiguousarray(x)

    def run(self) -> None:
        self._y = self.p.infer(self._x)

    def output(self) -> np.ndarray:
        return self._y


class Predictor:
    """Base class: subclasses set ``runtime`` and implement :meth:`infer`."""

    runtime = "base"

    def __init__(self, artifact_dir: Path, manifest: dict, *, threads: int | None = None,
                 device: str | None = None):
        self.artifact_dir = Path(artifact_dir) if artifact_dir is not None else None
        self.manifest = manifest
        self.threads = threads
        self.device = device if device is not None else manifest.get("device")
        inp, out = manifest["input"], manifest["output"]
        self.input_size = tuple(int(v) for v in inp["size"])
        self.input_layout = inp.get("layout", "NCHW")
        self.input_dtype = inp.get("dtype", "float32")
        self.input_quant = inp.get("quant")
        self.fit = inp.get("fit", "pad")
        self.output_layout = out.get("layout", "NCHW")
        self.output_kind = out.get("kind", "logits")
        self.output_quant = out.get("quant")
        self.output_size = tuple(int(v) for v in (out.get("size") or self.input_size))
        self.mean = np.asarray(manifest["mean"], np.float32).reshape(3, 1, 1)
        self.std = np.asarray(manifest["std"], np.float32).reshape(3, 1, 1)
        self._scale, self._bias = norm_coefficients(manifest["mean"], manifest["std"])
        #: set by :meth:`fuse_preprocessing`: the graph takes the padded uint8 image itself
        self.raw_input = False
        if self.fit not in ("pad", "resize"):
            raise ConfigError(f"manifest: input.fit must be 'pad' or 'resize', got {self.fit!r}")
        if self.input_layout not in ("NCHW", "NHWC") or self.output_layout not in ("NCHW", "NHWC"):
            raise ConfigError("manifest: layouts must be NCHW or NHWC")
        if self.input_dtype in INT_DTYPES and not self.input_quant:
            raise ConfigError(f"manifest: input dtype {self.input_dtype} needs input.quant {{scale, zero_point}}")

    # -- files

    def model_path(self, key: str = "model") -> Path:
        return self.artifact_dir / self.manifest["files"][key]

    # -- the one method a runtime implements

    def infer(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def execution(self) -> dict:
        """What actually runs the model here: the device and, where the runtime can say, the
        inference precision it computes in (OpenVINO may compute an f32 model in bf16)."""
        return {"device": self.device, "inference_precision": None}

    def model_call(self) -> "ModelCall":
        """The runtime's bare inference call, as its own benchmark tool times it (bench's
        model-only latency). The base class times :meth:`infer`."""
        return ModelCall(self)

    def throughput(self, x: np.ndarray, *, runs: int = 50, threads: int | None = None) -> dict | None:
        """Frames per second with parallel requests (``{"fps", "requests", "frames", "method"}``),
        or None where the runtime has no way to run them."""
        return None

    #: True where :meth:`sibling` gives more infer requests on the same compiled model
    shares_compiled_model = False

    def sibling(self) -> "Predictor | None":
        """Another Predictor on the same compiled model with its own infer request, for a
        second thread (None where the runtime has no such thing: load another Predictor)."""
        return None

    def fuse_preprocessing(self) -> bool:
        """Move the float conversion and mean/std normalisation into the runtime's graph where
        the runtime can (:meth:`preprocess` then hands over the padded uint8 image); True if
        it did. The base class cannot."""
        return False

    def fuse_argmax(self) -> bool:
        """Move the argmax over classes into the runtime's graph where the runtime can (the
        outputs then are class ids, ``output_kind == "classes"``); True if it did. For callers
        that never need the logits (the demo). The base class cannot."""
        return False

    def _argmax_fusable(self) -> bool:
        """Logits at the input size (a low-resolution head is upsampled before the argmax)
        and class ids that fit in uint8."""
        return (self.output_kind == "logits" and self.output_size == self.input_size
                and len(self.manifest["classes"]) <= 256)

    # -- shared pre/post

    def preprocess(self, image_rgb: np.ndarray) -> tuple[np.ndarray, dict]:
        if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3 \
                or image_rgb.dtype != np.uint8:
            raise DataError(f"predict expects a uint8 RGB image HxWx3, got "
                            f"{getattr(image_rgb, 'shape', type(image_rgb))} {getattr(image_rgb, 'dtype', '')}")
        img, meta = fit_image(image_rgb, self.input_size, self.fit, MEAN_RGB_U8)
        if self.raw_input:
            return np.ascontiguousarray(img[None]), meta
        return cast_input(self.normalize(img), self.input_dtype, self.input_quant), meta

    def normalize(self, img: np.ndarray) -> np.ndarray:
        """uint8 H x W x 3 RGB -> float32 1 x 3 x H x W (or 1 x H x W x 3), ``(v / 255 - mean) / std``.
        Channel by channel into one preallocated array: about 10x faster than the textbook
        three-pass expression on a 384x480 image, which matters in the demo's frame loop."""
        return normalize(img, self._scale, self._bias, self.input_layout)

    def _post(self, output, meta: dict, want_probs: bool = False):
        y = np.asarray(output)
        if self.output_quant and y.dtype.kind in "iu":
            y = dequantize(y, self.output_quant)
        th, tw = self.input_size
        ch, cw = meta["content"]
        oh, ow = meta["orig"]
        probs = None
        if self.output_kind == "classes":
            y = np.squeeze(y)  # N x H x W, N x H x W x 1, N x 1 x H x W -> H x W
            if y.ndim != 2:
                raise EdgesegError(f"{self.runtime}: a 'classes' output must be one HxW map, got {np.shape(output)}")
            cls = resize_hwc(y.astype(np.uint8), th, tw, cv2.INTER_NEAREST)
            cls = cls[:ch, :cw]
            if (ch, cw) != (oh, ow):
                cls = cv2.resize(cls, (ow, oh), interpolation=cv2.INTER_NEAREST)
            return cls.astype(np.uint8), None
        if y.ndim == 4:
            y = y[0]
        if y.ndim != 3:
            raise EdgesegError(f"{self.runtime}: expected logits N x C x H x W (or NHWC), got {np.shape(output)}")
        hwc = y if self.output_layout == "NHWC" else y.transpose(1, 2, 0)
        hwc = hwc.astype(np.float32, copy=False)
        if hwc.shape[:2] != (th, tw):
            hwc = resize_hwc(hwc, th, tw, cv2.INTER_LINEAR)
        hwc = hwc[:ch, :cw]
        if (ch, cw) != (oh, ow):
            hwc = resize_hwc(np.ascontiguousarray(hwc), oh, ow, cv2.INTER_LINEAR)
        cls = hwc.argmax(2).astype(np.uint8)
        if want_probs:
            e = np.exp(hwc - hwc.max(2, keepdims=True))
            probs = (e / e.sum(2, keepdims=True)).transpose(2, 0, 1).astype(np.float32)
        return cls, probs

    def postprocess(self, output, meta: dict) -> np.ndarray:
        return self._post(output, meta)[0]

    def predict(self, image_rgb: np.ndarray, return_probs: bool = False):
        x, meta = self.preprocess(image_rgb)
        y = self.infer(x)
        if not return_probs:
            return self._post(y, meta)[0]
        cls, probs = self._post(y, meta, want_probs=True)
        if probs is None:
            raise EdgesegError(f"{self.runtime}: this artifact outputs class ids, not logits: no probabilities")
        return cls, probs

    def timed_infer(self, image_rgb: np.ndarray):
        """Pre-processing and the model call, timed: ``(raw output, meta, {pre_ms, model_ms})``;
        :meth:`postprocess` of the output can then run elsewhere (the demo does it in its
        render thread, so it overlaps the next model call)."""
        t0 = time.perf_counter()
        x, meta = self.preprocess(image_rgb)
        t1 = time.perf_counter()
        y = self.infer(x)
        t2 = time.perf_counter()
        return y, meta, {"pre_ms": (t1 - t0) * 1e3, "model_ms": (t2 - t1) * 1e3}

    def timed_predict(self, image_rgb: np.ndarray):
        y, meta, times = self.timed_infer(image_rgb)
        t0 = time.perf_counter()
        cls = self.postprocess(y, meta)
        times["post_ms"] = (time.perf_counter() - t0) * 1e3
        return cls, times

    def __repr__(self):
        return f"{type(self).__name__}({self.artifact_dir}, size={self.input_size}, layout={self.input_layout})"


__all__ = ["Predictor", "ModelCall", "read_manifest", "quantize", "dequantize", "MANIFEST",
           "FORMAT_VERSION"]
