"""A finished ONNX model as an edgeseg source (``edgeseg build model.onnx --target T``).

:func:`open_onnx` reads the file (no external data, bounded size), checks it has one float
N x 3 x H x W image input, and adapts it in one place, as :mod:`edgeseg.models.own` does for
PyTorch code: a channel flip in front for a B,G,R model, the chosen output only, and a Resize
of low-resolution logits to the input. The result is :class:`OnnxModel`, a SegmentationModel
whose forward runs the adapted graph in ONNX Runtime: it is the fp32 reference every parity
check compares with, and the exporters write its graph instead of tracing PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeseg.errors import ConfigError, ModelError
from edgeseg.models.base import SegmentationModel

INPUT_NAME, OUTPUT_NAME = "input", "logits"
MAX_ONNX_MB = 2048  # larger models keep their weights as external data, which is refused
MIN_OPSET = 11  # Resize with explicit sizes
#: where the class count and pre-processing of an ONNX file come from (the CLI sets them)
_options: dict = {}


def set_options(**options) -> None:
    """What ONNX does not say: num_classes, classes, mean, std, value_range, bgr, input_size, output."""
    _options.clear()
    _options.update({k: v for k, v in options.items() if v is not None})


def options() -> dict:
    return dict(_options)


def is_onnx_source(source) -> bool:
    return str(source).lower().endswith(".onnx")


def _load(path: Path):
    import onnx

    if not path.is_file():
        raise ModelError(f"ONNX file '{path}' does not exist")
    if path.stat().st_size > MAX_ONNX_MB * 2**20:
        raise ModelError(f"'{path}' is {path.stat().st_size / 2**20:.0f} MB, above the {MAX_ONNX_MB} MB limit")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"'{path}' is not an ONNX model ({type(exc).__name__}): export it with torch.onnx.export "
                         f"or your framework's ONNX exporter") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ModelError(f"'{path}' keeps its weights in external files, which edgeseg does not follow (they may "
                         f"point outside its folder): save it as one file (onnx.save(..., save_as_external_data=False))")
    return model


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _image_input(model, path: Path):
    """The graph's one real input, checked to be a float N x 3 x H x W image."""
    import onnx

    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"'{path}' has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}): edgeseg runs "
                         f"models with one image input; export it with the others fixed")
    inp = inputs[0]
    t = inp.type.tensor_type
    if t.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError(f"'{path}' takes {onnx.TensorProto.DataType.Name(t.elem_type).lower()} input '{inp.name}', "
                         f"not float32: export the float model (edgeseg quantizes it per target)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None):
        raise ModelError(f"'{path}' input '{inp.name}' has shape {dims}, not N x 3 x H x W: edgeseg feeds "
                         f"NCHW RGB or BGR images")
    return inp, dims


def _choose_output(model, output, where: str) -> str:
    """The name of the main output: by index, by name, or the first."""
    outs = [o.name for o in model.graph.output]
    if isinstance(output, int):
        if not -len(outs) <= output < len(outs):
            raise ModelError(f"--output {output}: {where} has {len(outs)} outputs ({', '.join(outs)})")
        return outs[output]
    if output is None:
        return outs[0]
    if output not in outs:
        raise ModelError(f"--output '{output}' is not an output of {where} ({', '.join(outs)})")
    return output


def _adapt(model, inp, chosen: str, bgr: bool):
    """The graph with the input renamed 'input' (flipped to B,G,R where asked) and only the chosen
    output, resized to the input's size, as 'logits'."""
    import onnx
    from onnx import helper

    g = model.graph
    old_in = inp.name
    nodes = []
    if bgr:
        nodes.append(helper.make_node("Constant", [], ["edgeseg_bgr_idx"],
                                      value=helper.make_tensor("v", onnx.TensorProto.INT64, [3], [2, 1, 0])))
        nodes.append(helper.make_node("Gather", [INPUT_NAME, "edgeseg_bgr_idx"], [old_in], axis=1))
    elif old_in != INPUT_NAME:
        nodes.append(helper.make_node("Identity", [INPUT_NAME], [old_in]))
    # logits resized to the input's H x W (a no-op where they already are): half_pixel = torch's
    # bilinear with align_corners=False, the zoo models' upsampling
    tail = [
        helper.make_node("Shape", [INPUT_NAME], ["edgeseg_in_shape"]),
        helper.make_node("Shape", [chosen], ["edgeseg_out_shape"]),
        helper.make_node("Constant", [], ["edgeseg_0"], value=helper.make_tensor("v", onnx.TensorProto.INT64, [1], [0])),
        helper.make_node("Constant", [], ["edgeseg_2"], value=helper.make_tensor("v", onnx.TensorProto.INT64, [1], [2])),
        helper.make_node("Constant", [], ["edgeseg_4"], value=helper.make_tensor("v", onnx.TensorProto.INT64, [1], [4])),
        helper.make_node("Slice", ["edgeseg_out_shape", "edgeseg_0", "edgeseg_2"], ["edgeseg_nc"]),
        helper.make_node("Slice", ["edgeseg_in_shape", "edgeseg_2", "edgeseg_4"], ["edgeseg_hw"]),
        helper.make_node("Concat", ["edgeseg_nc", "edgeseg_hw"], ["edgeseg_sizes"], axis=0),
        helper.make_node("Resize", [chosen, "", "", "edgeseg_sizes"], [OUTPUT_NAME], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
    ]
    for i, node in enumerate(nodes + tail):  # named, so --keep-float can name them too
        node.name = f"edgeseg_adapt_{node.op_type}_{i}"
    new_input = helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["batch", 3, "height", "width"])
    new_output = helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes + list(g.node) + tail, g.name or "edgeseg", [new_input], [new_output],
                              initializer=list(g.initializer), value_info=list(g.value_info))
    adapted = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                                producer_name="edgeseg")
    return adapted


class OnnxModel(SegmentationModel):
    """An adapted ONNX graph behind edgeseg's model contract, run in ONNX Runtime (CPU)."""

    def __init__(self, graph_bytes: bytes, num_classes: int, *, name: str, kwargs: dict, static_size=None,
                 size_divisor: int = 1):
        super().__init__(num_classes)
        self.graph_bytes = graph_bytes
        self.model_name, self.model_kwargs = name, kwargs
        self.static_size = tuple(static_size) if static_size else None
        self.size_divisor = int(size_divisor)
        self._session = None

    def session(self):
        if self._session is None:
            self._session = _quiet_session(self.graph_bytes)
        return self._session

    def check_input_size(self, h: int, w: int) -> None:
        if self.static_size and (h, w) != self.static_size:
            raise ModelError(f"the ONNX model's input is fixed at {self.static_size[0]}x{self.static_size[1]}, "
                             f"not {h}x{w}: export it with dynamic height and width to run other sizes")
        super().check_input_size(h, w)

    def forward_features(self, x: torch.Tensor):
        if x.requires_grad or torch.is_grad_enabled() and self.training:
            raise ConfigError("an ONNX model cannot be trained or fine-tuned here: train the PyTorch model "
                              "(edgeseg train --model FILE.py:FACTORY), or build int8 with edgeseg build")
        y = self.session().run([OUTPUT_NAME], {INPUT_NAME: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(np.ascontiguousarray(y))

    def graph_at(self, input_size, *, dynamic: bool) -> bytes:
        """The graph to export: as adapted (dynamic), or with its input fixed at ``input_size``."""
        import onnx

        model = onnx.load_from_string(self.graph_bytes)
        if not dynamic:
            dims = model.graph.input[0].type.tensor_type.shape.dim
            for d, v in zip(dims, (1, 3, *input_size)):
                d.ClearField("dim_param")
                d.dim_value = int(v)
            model = onnx.shape_inference.infer_shapes(model)
        return model.SerializeToString()


def _quiet_session(graph: bytes):
    """An ONNX Runtime CPU session that logs nothing below fatal: a size the graph refuses while
    probing is reported by edgeseg, once, not by ORT's logger."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    return ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _probe(onnx_model, input_name: str, chosen: str, path: Path, size) -> tuple:
    """Run the file as it is once at ``size``; the chosen output's shape, or one line on what is wrong."""
    try:
        session = _quiet_session(onnx_model.SerializeToString())
        y = session.run([chosen], {input_name: np.zeros((1, 3, *size), np.float32)})[0]
    except Exception as exc:
        raise ModelError(f"'{path}' did not run in ONNX Runtime at {size[0]}x{size[1]} ({_first_line(exc)}): "
                         f"give an input size it accepts (--img-size HxW)") from None
    if y.ndim != 4 or not np.issubdtype(y.dtype, np.floating):
        raise ModelError(f"'{path}' gives a {y.ndim}-D {y.dtype} output '{chosen}' of shape {tuple(y.shape)}: "
                         f"edgeseg needs N x C x h x w float logits (choose another with --output)")
    return tuple(y.shape)


def _size_divisor(model: OnnxModel) -> int:
    """The smallest stride the dynamic graph runs at (the same probe as a PyTorch model's)."""
    from edgeseg.models.own import smallest_divisor

    def error_at(h, w):
        try:
            model.session().run([OUTPUT_NAME], {INPUT_NAME: np.zeros((1, 3, h, w), np.float32)})
            return None
        except Exception as exc:
            return exc

    return smallest_divisor(error_at)[0] or 32


def open_onnx(path, info_from_data=None) -> tuple[OnnxModel, object, dict]:
    """``(model, dataset descriptor, a checkpoint-like dict)`` of an ONNX file, adapted with the
    options set by the CLI (:func:`set_options`); the descriptor comes from ``--data``, a
    classes file or ``--num-classes``."""
    from edgeseg.files import file_sha256
    from edgeseg.models.own import input_descriptor

    path = Path(path)
    opts = options()
    onnx_model = _load(path)
    if _opset(onnx_model) < MIN_OPSET:
        raise ModelError(f"'{path}' uses opset {_opset(onnx_model)}: edgeseg needs {MIN_OPSET} or newer "
                         f"(re-export with opset_version=17, or onnx.version_converter)")
    inp, dims = _image_input(onnx_model, path)
    chosen = _choose_output(onnx_model, opts.get("output"), f"'{path}'")
    static = (dims[2], dims[3]) if dims[2] and dims[3] else None
    if "input_size" in opts:
        from edgeseg.sizes import parse_size

        size = parse_size(opts["input_size"])
        if static and size != static:
            raise ModelError(f"input size {size[0]}x{size[1]} (--img-size): '{path}' has a fixed input of "
                             f"{static[0]}x{static[1]}")
    elif static:
        size = static
    elif info_from_data is not None and info_from_data[1]:
        size = info_from_data[1]  # the data's image size
    else:
        raise ModelError(f"'{path}' has a dynamic input size: give --img-size HxW (or --data, whose images set it)")
    kwargs = {"file_sha256": file_sha256(path), "output": chosen, "bgr": bool(opts.get("bgr"))}
    shape = _probe(onnx_model, inp.name, chosen, path, size)
    info = _descriptor(path, shape[1], opts, info_from_data[0] if info_from_data else None)
    info = input_descriptor(info, opts.get("mean"), opts.get("std"), opts.get("value_range", 1.0),
                            bool(opts.get("bgr")))
    adapted = _adapt(onnx_model, inp, chosen, bool(opts.get("bgr")))
    model = OnnxModel(adapted.SerializeToString(), shape[1], name=f"onnx:{path.name}", kwargs=kwargs,
                      static_size=static)
    model.size_divisor = 1 if static else _size_divisor(model)
    model.eval()
    ckpt = {"model": {"name": model.model_name, "num_classes": shape[1], "kwargs": kwargs},
            "dataset": info.to_dict(), "input_size": list(size), "onnx": {"path": str(path.resolve())}}
    return model, info, ckpt


def _descriptor(path: Path, channels: int, opts: dict, data_info):
    """Class names and colours: the data's, a classes file's, or numbered ones."""
    from edgeseg.data.info import DatasetInfo

    if data_info is not None:
        info = data_info
    elif "classes" in opts:
        info = DatasetInfo(name=path.stem, classes=tuple(opts["classes"]), colors=_palette(len(opts["classes"])))
    else:
        n = int(opts.get("num_classes") or channels)
        info = DatasetInfo(name=path.stem, classes=tuple(f"class{i}" for i in range(n)), colors=_palette(n))
    if "num_classes" in opts and int(opts["num_classes"]) != info.num_classes:
        raise ModelError(f"--num-classes {opts['num_classes']} but the classes given number {info.num_classes}")
    if info.num_classes != channels:
        raise ModelError(f"'{path}' gives {channels} output channels but {info.num_classes} classes were given: "
                         f"choose the logits output (--output) or the matching classes")
    return info


def _palette(n: int) -> tuple:
    rng = np.random.default_rng(0)
    return tuple(tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(n))
