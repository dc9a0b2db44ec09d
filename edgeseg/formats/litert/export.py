"""Full-integer int8 TFLite export (Coral Edge TPU, LiteRT CPU) with litert-torch and PT2E.

Pipeline (every call is the installed packages' public API):

1. Head options applied to the fp32 model, on its ``torch.export`` graph:
   ``low_res_output`` removes the model's final resize (an ``aten.upsample_*`` node feeding
   the output) so the graph outputs logits at 1/k of the input (the manifest's
   ``output.size``; the runtime's post-processing upsamples); ``fused_argmax`` appends
   ``argmax`` over classes so the graph outputs class ids (``output.kind: classes``).
2. NHWC input: ``litert_torch.to_channel_last_io(model, args=[0], outputs=[0])`` wraps the
   NCHW model with permutes at its input/output; the converter folds them into the
   NHWC TFLite graph, which then holds no TRANSPOSE op at the edges (the Edge TPU check
   reports any TRANSPOSE left inside).
3. ``torch.export.export(wrapper, (x_nhwc,)).module()``, then
   ``torchao.quantization.pt2e.quantize_pt2e.prepare_pt2e(gm, PT2EQuantizer().set_global(
   get_symmetric_quantization_config(is_per_channel=True)))``, calibration by running
   every calibration image through the prepared model, ``convert_pt2e(gm, fold_quantize=False)``.
   Weights: int8 symmetric per-channel; activations: int8 per-tensor (HistogramObserver).
4. ``litert_torch.convert(gm, (x_nhwc,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
   .export(path)``: the quantize/dequantize pairs at the graph edges are folded, so the
   model's input and output tensors are themselves int8 (checked below from
   ``ai_edge_litert.interpreter.Interpreter.get_input_details()/get_output_details()``,
   whose ``quantization`` (scale, zero_point) goes to the manifest).
5. The Edge TPU compatibility check (:func:`edgeseg.formats.litert.edgetpu.check_edgetpu`) and, where it
   is on PATH, ``edgetpu_compiler -s -o OUT model_int8.tflite``.

Options come from ``profile.extra`` (see ``targets/coral.yaml``) or keyword arguments.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.formats.base import BuildError, ExportResult, export_step, require_calib

log = logging.getLogger("edgeseg.formats")

RESIZE_TARGETS = ("upsample_bilinear2d", "upsample_nearest2d", "_upsample_bilinear2d_aa",
                  "_upsample_nearest_exact2d", "upsample_bicubic2d")


def torch_modules():
    require("litert_torch", "tflite", "the TFLite export")
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    return litert_torch, pt2e_quantizer, quant_config, quantize_pt2e


def interpreter_class():
    """``ai_edge_litert.interpreter.Interpreter``, else ``tflite_runtime.interpreter.Interpreter``."""
    from edgeseg.formats.litert.runtime import litert

    return litert()[0]


# --- head options ------------------------------------------------------------------------

#: ops that may sit between the model's final resize and the graph output (the NHWC
#: permute of ``to_channel_last_io``, the fused argmax)
_PASS_THROUGH = ("permute", "argmax")


def drop_final_resize(gm):
    """Remove the resize op whose result becomes the graph output of an exported GraphModule
    (looking through the NHWC output permute and a fused argmax).

    Returns ``(gm, (h, w))``, the output's new spatial size. ConfigError when the output is
    not produced by a resize (the model already outputs at its head's resolution)."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    src = out.args[0][0] if isinstance(out.args[0], (tuple, list)) else out.args[0]
    while src.op == "call_function" and getattr(src.target, "__name__", str(src.target)).startswith(_PASS_THROUGH):
        src = src.args[0]
    name = getattr(src.target, "__name__", str(src.target))
    if src.op != "call_function" or not any(name.startswith(t) for t in RESIZE_TARGETS):
        raise ConfigError(
            f"low_res_output: the model's last op is '{name}', not a resize: this model has no final "
            f"upsample to drop; build without low_res_output")
    low = src.args[0]
    src.replace_all_uses_with(low)
    gm.graph.erase_node(src)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    shape = tuple(int(v) for v in low.meta["val"].shape[-2:])  # NCHW before the output permute
    return gm, shape


def export_graph(module, example, *, dynamic_batch: bool = False):
    """``torch.export`` of the NHWC module from :func:`prepare_module`, as one graph (the
    export rewrites and the quantizer see all of it). ``dynamic_batch``: a free batch
    dimension (``example`` must then have a batch of 2 or more)."""
    import torch

    kwargs = {"dynamic_shapes": (({0: torch.export.Dim("batch", min=1, max=1024)},),)} if dynamic_batch else {}
    with torch.no_grad():
        return torch.export.export(module, (example,), **kwargs).module()


def apply_low_res_output(gm, low_res_output):
    """:func:`drop_final_resize` per the ``low_res_output`` option (True, False or "auto");
    returns ``(gm, out_size)`` with ``out_size`` None when the output keeps the input size."""
    mode = low_res_mode(low_res_output)
    if not mode:
        return gm, None
    try:
        return drop_final_resize(gm)
    except ConfigError:
        if mode != "auto":
            raise  # asked for explicitly: say that this model has no final resize
        return gm, None


def argmax_head(module):
    """Wraps an NHWC-output module: ``argmax`` over the last (class) axis -> N x H x W class ids
    (int64 in PyTorch, int32 in the .tflite). Taking it over the NHWC axis keeps the graph
    free of a TRANSPOSE before the ARG_MAX."""
    import torch

    class ArgmaxHead(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return torch.argmax(self.inner(x), dim=-1)

    return ArgmaxHead(module)


def low_res_mode(value) -> bool | str:
    """``low_res_output`` as given in a profile or call: True, False or ``"auto"`` (drop the
    final resize when the model ends with one, keep full-resolution logits otherwise)."""
    if isinstance(value, str):
        if value.lower() == "auto":
            return "auto"
        raise ConfigError(f"low_res_output must be true, false or auto, got '{value}'")
    return bool(value)


def prepare_module(model, input_size, *, fused_argmax: bool = False):
    """The NHWC-in module to quantize and its output kind: ``(module, kind)``. Output layout
    is NHWC (logits N x h x w x C; classes N x h x w); :func:`export_graph` then exports it
    (and drops the final resize for ``low_res_output``)."""
    litert_torch, *_ = torch_modules()
    wrapped = litert_torch.to_channel_last_io(model.eval(), args=[0], outputs=[0])
    if fused_argmax:
        wrapped = argmax_head(wrapped)
    return wrapped, ("classes" if fused_argmax else "logits")


def apply_export_rewrites(module, gm, inputs, details: dict | None = None):
    """Apply :mod:`edgeseg.formats.litert.rewrite` to ``gm`` (the ``torch.export`` graph of
    ``module``) in place and check that the fp32 outputs did not change on ``inputs``:
    a difference above 1e-4 of the output range is a BuildError. ``details`` receives
    ``rewrites: {name: count}`` and ``max_abs_diff``."""
    import torch

    from edgeseg.formats.litert import rewrite as rw

    counts = rw.apply_rewrites(gm)
    diff, scale = 0.0, 1.0
    if any(counts.values()):
        diff = rw.max_abs_diff(module, gm, inputs)
        with torch.no_grad():
            scale = max(float(module(a).float().abs().max()) for a in inputs)
        if diff > 1e-4 * max(scale, 1.0):
            raise BuildError(f"export rewrites {counts} changed the fp32 output by {diff:.3g} (output range "
                             f"{scale:.3g}): a rewrite is not exact for this model; build with "
                             f"extra.rewrites: false and report it")
    if details is not None:
        details.update({"rewrites": counts, "max_abs_diff": diff, "output_range": scale})
    return gm


# --- quantization + conversion ------------------------------------------------------------

def nchw_to_nhwc(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 2, 3, 1)))


@contextlib.contextmanager
def _quiet():
    """litert-torch prints progress lines to stdout/stderr: keep them out of the build output."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield buf


@contextlib.contextmanager
def ordered_observer_creation():
    """Work around an ordering bug in torchao 0.18's ``prepare_pt2e``.

    ``prepare._get_obs_or_fq_map`` creates one observer per sharing group from the first
    member it meets, in annotation order; when that member holds a ``SharedQuantizationSpec``
    whose target has no observer yet (a max-pool and a concatenation reading the same
    ReLU, as in every U-Net skip) it fails with "please make sure only refer to edge or node
    that has observer/fake_quant inserted". Creating observers for plain specs first, then
    shared, then derived (bias) specs gives the same groups without the failure.
    """
    import torchao.quantization.pt2e.prepare as prep
    from torchao.quantization.pt2e.quantizer import DerivedQuantizationSpec, SharedQuantizationSpec

    original = prep._get_obs_or_fq_map

    def ordered(edge_or_node_to_group_id, edge_or_node_to_qspec, is_qat):
        def rank(item):
            spec = item[1]
            return 1 if isinstance(spec, SharedQuantizationSpec) else 2 if isinstance(spec, DerivedQuantizationSpec) \
                else 0

        made, by_group = {}, {}
        for key, spec in sorted(edge_or_node_to_qspec.items(), key=rank):
            group = edge_or_node_to_group_id[key]
            if group not in by_group:
                by_group[group] = prep._create_obs_or_fq_from_qspec(spec, made, is_qat)
            made[key] = by_group[group]
        return {k: made[k] for k in edge_or_node_to_qspec}

    prep._get_obs_or_fq_map = ordered
    try:
        yield
    finally:
        prep._get_obs_or_fq_map = original


def quantize_pt2e(module, calib_nhwc: list, *, per_channel: bool = True, rewrites: bool = True,
                  rewrite_details: dict | None = None, low_res_output: bool | str = False):
    """PT2E static int8 quantization; returns ``(converted GraphModule, quantizer, out_size)``
    (``out_size`` None: the input's size; else the low-resolution output's).

    ``rewrites``: apply the export-time rewrites (:func:`apply_export_rewrites`) to the
    exported graph before quantization."""
    import torch

    _, pq, _, qpt2e = torch_modules()
    gm = export_graph(module, calib_nhwc[0])
    if rewrites:
        apply_export_rewrites(module, gm, calib_nhwc[:2], rewrite_details)
    gm, out_size = apply_low_res_output(gm, low_res_output)  # after the rewrites' exactness check
    quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=per_channel))
    with ordered_observer_creation():
        prepared = qpt2e.prepare_pt2e(gm, quantizer)
    from edgeseg.progress import track

    with torch.no_grad():
        for a in track(calib_nhwc, "calibration (PT2E)"):
            prepared(a)
    return qpt2e.convert_pt2e(prepared, fold_quantize=False), quantizer, out_size


def convert_tflite(gm, example, quantizer, path: Path) -> Path:
    litert_torch, _, qc, _ = torch_modules()
    from edgeseg.formats.litert.rewrite import nhwc_constant_pad

    with _quiet(), nhwc_constant_pad():
        edge = litert_torch.convert(gm, (example,), quant_config=qc.QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(path))
    return path


def io_details(path: Path) -> tuple[dict, dict]:
    """(input, output) details of a .tflite from the interpreter, as manifest entries."""
    Interpreter = interpreter_class()
    it = Interpreter(model_path=str(path))
    (inp,), (out,) = it.get_input_details(), it.get_output_details()

    def entry(d):
        scale, zp = d["quantization"]
        dtype = np.dtype(d["dtype"]).name
        quant = {"scale": float(scale), "zero_point": int(zp)} if scale else None
        return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": dtype, "quant": quant}

    return entry(inp), entry(out)


def _quantized_graph(qmodel, quantized: dict, *, low_res_output, fused_argmax: bool, input_size):
    """The int8 graph of a checkpoint quantized by ``edgeseg compress --target edgetpu``
    (:class:`edgeseg.formats.litert.pt2e.PT2EModel`) and its output facts; no calibration."""
    from edgeseg.formats.litert import pt2e

    if not isinstance(qmodel, pt2e.PT2EModel):
        raise BuildError("a PT2E-quantized checkpoint did not load as a PT2E graph: re-run `edgeseg compress "
                         "--target edgetpu`")
    trained = bool(qmodel.head.get("low_res_output", False))
    if low_res_output != "auto" and trained != low_res_output:
        raise ConfigError(f"this checkpoint was quantized with low_res_output={str(trained).lower()} and the build "
                          f"asks for {str(low_res_output).lower()}: the head is part of the trained int8 graph; "
                          f"build with low_res_output: {str(trained).lower()} or re-run `edgeseg compress`")
    qmodel.check_input_size(*input_size)
    gm = qmodel.converted()
    h, w = qmodel.input_size
    import torch

    with torch.no_grad():
        out_size = tuple(int(v) for v in gm(torch.zeros(1, h, w, 3)).shape[1:3])
    quantizer = pt2e.make_quantizer(qmodel.per_channel)
    module = argmax_head(gm) if fused_argmax else gm
    return module, quantizer, out_size




def export(model, info, *, input_size, precision: str, out_dir: Path, profile, calib=None,
           low_res_output: bool | str | None = None, fused_argmax: bool | None = None,
           quantized: dict | None = None) -> ExportResult:
    out_dir = Path(out_dir)
    if precision != "int8":
        raise BuildError(f"the tflite exporter builds full-integer int8 only, not '{precision}' "
                         f"(target '{profile.name}')")
    if not quantized:
        require_calib(precision, calib)
    extra = profile.extra or {}
    low_res_output = low_res_mode(extra.get("low_res_output", False) if low_res_output is None else low_res_output)
    fused_argmax = bool(extra.get("fused_argmax", False) if fused_argmax is None else fused_argmax)
    h, w = (int(v) for v in input_size)
    path = out_dir / "model_int8.tflite"
    rewrite_info: dict = {}
    kind = "classes" if fused_argmax else "logits"

    if quantized:
        with export_step("PT2E int8 graph of the quantized checkpoint (convert_pt2e)"):
            gm, quantizer, out_size = _quantized_graph(model, quantized, low_res_output=low_res_output,
                                                       fused_argmax=fused_argmax, input_size=(h, w))
        example, n_calib = nchw_to_nhwc(np.zeros((1, 3, h, w), np.float32)), 0
    else:
        with export_step("TFLite head options + NHWC wrapper"):
            module, kind = prepare_module(model, (h, w), fused_argmax=fused_argmax)
        calib_nhwc = [nchw_to_nhwc(a) for a in calib]
        with export_step(f"export rewrites + PT2E int8 quantization ({len(calib_nhwc)} calibration images)"):
            gm, quantizer, out_size = quantize_pt2e(module, calib_nhwc,
                                                    per_channel=bool(extra.get("per_channel", True)),
                                                    rewrites=bool(extra.get("rewrites", True)),
                                                    rewrite_details=rewrite_info, low_res_output=low_res_output)
        out_size = out_size or (h, w)
        example, n_calib = calib_nhwc[0], len(calib_nhwc)
    with export_step("litert-torch conversion", path):
        convert_tflite(gm, example, quantizer, path)

    inp, out = io_details(path)
    if inp["dtype"] not in ("int8", "uint8") or (kind == "logits" and out["dtype"] not in ("int8", "uint8")):
        raise BuildError(f"litert-torch did not give integer input/output (input {inp['dtype']}, output "
                         f"{out['dtype']}): the model is not full-integer; check the model's ops")
    if inp["shape"] != [1, h, w, 3]:
        raise BuildError(f"unexpected TFLite input shape {inp['shape']} (wanted [1, {h}, {w}, 3])")

    from edgeseg.formats.litert import edgetpu

    report = edgetpu.check_edgetpu(path, max_resize=int((profile.constraints or {}).get("max_resize",
                                                                                     edgetpu.DEFAULT_MAX_RESIZE)))
    compiler = edgetpu.run_compiler(path, out_dir / "edgetpu", command=(profile.compiler or {}).get("command"),
                                    cwd=out_dir)
    files = [path]
    compiled = compiler.get("output_model")
    details = {
        "files": {"model": path.name},
        "input": {"name": inp["name"], "size": [h, w], "layout": "NHWC", "dtype": inp["dtype"],
                  "quant": inp["quant"]},
        "output": {"name": out["name"], "layout": "NHWC", "kind": kind, "dtype": out["dtype"],
                   "quant": out["quant"] if kind == "logits" else None, "size": list(out_size)},
        "head": {"low_res_output": tuple(out_size) != (h, w), "fused_argmax": fused_argmax,
                 "output_stride": [h // out_size[0], w // out_size[1]]},
        "quantization": {"method": "the checkpoint's PT2E quantizers (edgeseg compress --target edgetpu, "
                                   f"{quantized.get('method')}) + litert-torch" if quantized else
                                   "PT2E static (torchao prepare_pt2e/convert_pt2e) + litert-torch",
                         "quantizer": "litert_torch PT2EQuantizer, get_symmetric_quantization_config("
                                      f"is_per_channel={model.per_channel if quantized else bool(extra.get('per_channel', True))}"
                                      f"{', is_qat=True' if quantized else ''})",
                         "weights": "int8 symmetric per-channel", "activations": "int8 per-tensor",
                         "calibration_images": n_calib, "full_integer": report["full_integer"],
                         **({"checkpoint": {k: v for k, v in quantized.items() if k != "float_shapes"}} if quantized else {})},
        "export_rewrites": rewrite_info,
        "edgetpu_check": report,
        "compiler": compiler,
    }
    if compiled:
        files.append(out_dir / compiled)
        details["files"]["edgetpu_model"] = Path(compiled).as_posix()
    log.info("Edge TPU check: %s", report["summary"])
    return ExportResult(path, files, precision, details)
