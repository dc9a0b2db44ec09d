"""Predictor pre/post-processing driven by the manifest (layouts, quantisation, padding,
resizing, class outputs), load_predictor errors, export_step and the target profiles."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from edgeseg.data.transforms import MEAN_RGB_U8, normalize
from edgeseg.errors import ConfigError, EdgesegError, MissingDependencyError
from edgeseg.formats.base import BuildError, export_step
from edgeseg.formats import load_predictor
from edgeseg.formats.predictor import Predictor, dequantize, quantize
from edgeseg.targets import list_targets, load_target

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def manifest(size=(32, 48), *, in_layout="NCHW", in_dtype="float32", in_quant=None, fit="pad",
             out_layout="NCHW", kind="logits", out_quant=None, out_size=None, runtime="fake"):
    return {"format_version": 1, "runtime": runtime, "mean": MEAN, "std": STD, "files": {"model": "model.bin"},
            "input": {"name": "input", "size": list(size), "layout": in_layout, "dtype": in_dtype,
                      "quant": in_quant, "fit": fit},
            "output": {"name": "logits", "layout": out_layout, "kind": kind, "dtype": "float32",
                       "quant": out_quant, "size": list(out_size or size)}}


class OneHot(Predictor):
    """A fake model: returns one-hot logits of a fixed class map (in the manifest's output format)."""

    runtime = "fake"

    def __init__(self, m, classes_map, num_classes=4):
        super().__init__(None, m)
        self.classes_map = classes_map
        self.num_classes = num_classes
        self.seen = None

    def infer(self, x):
        self.seen = x
        cm = self.classes_map
        if self.output_kind == "classes":
            return cm[None].astype(np.int64)
        logits = (np.eye(self.num_classes, dtype=np.float32)[cm] * 4.0 - 2.0).transpose(2, 0, 1)[None]
        if self.output_layout == "NHWC":
            logits = logits.transpose(0, 2, 3, 1)
        if self.output_quant:
            logits = quantize(logits, self.output_quant, "int8")
        return logits


def rand_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_quantize_round_trip():
    q = {"scale": 0.02, "zero_point": -3}
    x = np.linspace(-2.4, 2.5, 101, dtype=np.float32)
    back = dequantize(quantize(x, q, "int8"), q)
    assert np.abs(back - x).max() <= 0.01 + 1e-6
    assert quantize(np.array([100.0]), q, "int8")[0] == 127  # clipped


def test_preprocess_nchw_pads_with_mean_and_normalises():
    p = OneHot(manifest((32, 48)), np.zeros((32, 48), np.int64))
    img = rand_image(30, 40)
    x, meta = p.preprocess(img)
    assert x.shape == (1, 3, 32, 48) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, :30, :40], normalize(img, MEAN, STD), atol=1e-5)
    pad = normalize(np.array([[MEAN_RGB_U8]], np.uint8), MEAN, STD)[:, 0, 0]
    np.testing.assert_allclose(x[0, :, 31, 47], pad, atol=1e-5)
    assert meta == {"orig": (30, 40), "content": (30, 40)}


def test_preprocess_nhwc_int8_quantised_input():
    q = {"scale": 2.0 / 127, "zero_point": 0}
    p = OneHot(manifest((32, 48), in_layout="NHWC", in_dtype="int8", in_quant=q), np.zeros((32, 48), np.int64))
    img = rand_image(32, 48, 1)
    x, _ = p.preprocess(img)
    assert x.shape == (1, 32, 48, 3) and x.dtype == np.int8
    ref = normalize(img, MEAN, STD).transpose(1, 2, 0)
    back = dequantize(x[0], q)
    inside = np.abs(ref) < 2.0  # values beyond the int8 range are clipped
    assert np.abs(back - ref)[inside].max() <= q["scale"] / 2 + 1e-6


@pytest.mark.parametrize("out_layout,out_quant", [("NCHW", None), ("NHWC", None),
                                                  ("NHWC", {"scale": 0.05, "zero_point": 10})])
def test_postprocess_layouts_and_dequantisation_crop_to_image(out_layout, out_quant):
    rng = np.random.default_rng(2)
    cmap = rng.integers(0, 4, (32, 48))
    p = OneHot(manifest((32, 48), out_layout=out_layout, out_quant=out_quant), cmap)
    img = rand_image(27, 41)
    out = p.predict(img)
    assert out.shape == (27, 41) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, cmap[:27, :41])
    cls, probs = p.predict(img, return_probs=True)
    assert probs.shape == (4, 27, 41)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), cls)


def test_low_resolution_output_is_upsampled():
    cmap = np.zeros((16, 24), np.int64)
    cmap[:, 12:] = 2  # right half class 2
    p = OneHot(manifest((32, 48), out_size=(16, 24)), cmap)
    out = p.predict(rand_image(32, 48))
    assert out.shape == (32, 48)
    assert (out[:, :22] == 0).all() and (out[:, 26:] == 2).all()


def test_class_output_and_timed_predict():
    cmap = np.random.default_rng(3).integers(0, 4, (32, 48))
    p = OneHot(manifest((32, 48), kind="classes"), cmap)
    out, t = p.timed_predict(rand_image(20, 30))
    np.testing.assert_array_equal(out, cmap[:20, :30])
    assert set(t) == {"pre_ms", "model_ms", "post_ms"}
    with pytest.raises(EdgesegError, match="class ids"):
        p.predict(rand_image(20, 30), return_probs=True)


def test_larger_image_is_scaled_down_then_back():
    cmap = np.zeros((32, 48), np.int64)
    cmap[16:] = 1  # bottom half
    p = OneHot(manifest((32, 48)), cmap)
    out = p.predict(rand_image(64, 96))  # scale 0.5: content fills the input exactly
    assert out.shape == (64, 96)
    assert (out[:30] == 0).all() and (out[34:] == 1).all()


def test_fit_resize():
    cmap = np.zeros((32, 48), np.int64)
    cmap[:, 24:] = 3
    p = OneHot(manifest((32, 48), fit="resize"), cmap)
    x, _ = p.preprocess(rand_image(50, 50))
    assert x.shape == (1, 3, 32, 48)
    out = p.predict(rand_image(50, 50))
    assert out.shape == (50, 50) and (out[:, :23] == 0).all() and (out[:, 27:] == 3).all()


def test_bad_manifest_and_image():
    with pytest.raises(ConfigError, match="quant"):
        OneHot(manifest(in_dtype="int8"), np.zeros((32, 48), np.int64))
    p = OneHot(manifest(), np.zeros((32, 48), np.int64))
    with pytest.raises(EdgesegError, match="uint8 RGB"):
        p.preprocess(np.zeros((10, 10), np.float32))


def test_load_predictor_errors(tmp_path):
    with pytest.raises(ConfigError, match="manifest.json"):
        load_predictor(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(runtime="nosuchruntime")))
    (tmp_path / "model.bin").write_bytes(b"x")  # the file the manifest names (a missing one is its own error)
    with pytest.raises(ConfigError, match="nosuchruntime"):
        load_predictor(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_missing_runtime_names_the_extra(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(runtime="tensorrt")))
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match=r"edgeseg\[tensorrt\]"):
        load_predictor(tmp_path)


def test_export_step(tmp_path):
    with export_step("write", tmp_path / "ok.bin") as step:
        (tmp_path / "ok.bin").write_bytes(b"x")
    assert step["seconds"] is not None
    with pytest.raises(BuildError, match="write failed: it wrote no output"):
        with export_step("write", tmp_path / "empty.bin"):
            (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(BuildError, match="convert failed: ValueError: boom"):
        with export_step("convert"):
            raise ValueError("boom")
    with pytest.raises(ConfigError, match="as is"):  # edgeseg errors pass through unchanged
        with export_step("convert"):
            raise ConfigError("as is")


def test_target_profiles_load():
    names = list_targets()
    assert {"onnxruntime-cpu", "openvino-cpu", "openvino-npu", "coral", "jetson"} <= set(names)
    for name in names:
        p = load_target(name)
        assert p.default_precision in p.precisions
        for prec in p.precisions:
            assert 0.5 < p.min_agreement(prec) <= 1.0
    ort = load_target("onnxruntime-cpu")
    assert ort.min_agreement("int8") < ort.min_agreement("fp32")
    coral = load_target("coral")
    assert coral.layout == "NHWC" and coral.input_dtype_for("int8") == "int8" and coral.compiler["command"]
