"""Edge TPU compatibility check of a .tflite file, and the ``edgetpu_compiler`` wrapper.

``check_edgetpu(path)`` reads the TFLite flatbuffer (``ai_edge_litert.schema_py_generated``,
the TFLite schema's generated Python) and applies the Coral Edge TPU requirements op by
op, in execution order. It is a pre-flight check for machines without the compiler (an
x86-64 Debian package from Coral's own repository); where ``edgetpu_compiler`` is on
PATH, :func:`run_compiler` runs it and parses its op-mapping table, which is the ground
truth.

Rules and their source -- Coral, "TensorFlow models on the Edge TPU",
https://coral.ai/docs/edgetpu/models-intro/ ("Model requirements" and "Supported
operations"):

* R1 op list: every op must be in the supported-operations table (``SUPPORTED_OPS``
  below, with the table's "known limitations"). Custom ops never map.
* R2 full integer: "Tensor parameters are quantized (8-bit fixed-point numbers; int8 or
  uint8)": every activation tensor of a mapped op must be int8/uint8 (int32 is allowed
  only for constant biases and shape/size/axis operands); a float tensor names its op.
* R3 rank: "Tensors are either 1-, 2-, or 3-dimensional. If a tensor has more than 3
  dimensions, then only the 3 innermost dimensions may have a size greater than 1."
* R4 static shapes: "Tensor sizes are constant at compile-time (no dynamic sizes)"
  (a ``-1`` in a tensor's shape signature fails this).
* R5 constant parameters: "Model parameters (such as bias tensors) are constant at
  compile-time" (a conv whose weights are not a constant buffer fails this).
* Per-op limitations from the table: no fused activation on pools/concatenation, equal
  x/y dilation for convolutions, Mean/Pad not over the batch dimension, Softmax 1-D with at
  most 16,000 elements, Concatenation with a constant input only as a 2-input zero pad.
* Partitioning: "the compiler ... cannot partition the model more than once": the
  first op that cannot map, and every op after it, runs on the CPU (``first_unmapped``,
  ``ops_on_cpu``).

Heuristics (say so in the report, never silent facts): the table says only that
ResizeBilinear / ResizeNearestNeighbor "may not be mapped depending on input/output
size". Coral's own DeepLabv3 at 513x513 runs its final upsample on the CPU, so an output
side above ``max_resize`` (512 by default; ``constraints.max_resize`` in coral.yaml) is a
*warning* ("likely unmapped"), and so is a TransposeConv with an output side above it.
``Reshape`` ("certain reshapes might not be mapped for large tensor sizes") is not checked.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import ConfigError, require

SOURCE = "https://coral.ai/docs/edgetpu/models-intro/#supported-operations"
COMPILER_URL = "https://coral.ai/docs/edgetpu/compiler/"
DEFAULT_MAX_RESIZE = 512
NO_COMPILER = "edgetpu_compiler not on PATH (Coral's Debian package, x86-64 only)"


@dataclass(frozen=True)
class OpRule:
    doc_name: str
    runtime: str = "all"  # Edge TPU runtime version the op maps from ("all", ">=13"...)
    limitation: str = ""


# The supported-operations table of https://coral.ai/docs/edgetpu/models-intro/ (Edge TPU
# compiler 16 / runtime 14+), keyed by TFLite builtin operator name. Ops not listed here
# (DEQUANTIZE, ARG_MAX, GATHER, HARD_SWISH, BATCH_MATMUL, ...) do not map.
SUPPORTED_OPS: dict[str, OpRule] = {
    "ADD": OpRule("Add"),
    "AVERAGE_POOL_2D": OpRule("AveragePool2d", limitation="No fused activation function."),
    "CONCATENATION": OpRule("Concatenation", limitation=(
        "No fused activation function. If any input is a compile-time constant tensor, there must be only "
        "2 inputs, and this constant tensor must be all zeroes (effectively, a zero-padding op).")),
    "CONV_2D": OpRule("Conv2d", limitation="Must use the same dilation in x and y dimensions."),
    "DEPTHWISE_CONV_2D": OpRule("DepthwiseConv2d", limitation="Must use the same dilation in x and y dimensions."),
    "EXPAND_DIMS": OpRule("ExpandDims", ">=13"),
    "FULLY_CONNECTED": OpRule("FullyConnected", limitation=(
        "Only the default format is supported for fully-connected weights. Output tensor is one-dimensional.")),
    "L2_NORMALIZATION": OpRule("L2Normalization"),
    "LOGISTIC": OpRule("Logistic"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": OpRule("LSTM", ">=14", "Unidirectional LSTM only."),
    "MAXIMUM": OpRule("Maximum"),
    "MAX_POOL_2D": OpRule("MaxPool2d", limitation="No fused activation function."),
    "MEAN": OpRule("Mean", limitation="No reduction in batch dimension (<=12: x/y reduction only; >=13: a "
                                      "z-reduction needs z a multiple of 4)."),
    "MINIMUM": OpRule("Minimum"),
    "MUL": OpRule("Mul"),
    "PACK": OpRule("Pack", ">=13", "No packing in batch dimension."),
    "PAD": OpRule("Pad", limitation="No padding in batch dimension (<=12: x/y padding only)."),
    "PRELU": OpRule("PReLU", ">=13", "Alpha needs to be a constant."),
    "QUANTIZE": OpRule("Quantize", ">=13"),
    "REDUCE_MAX": OpRule("ReduceMax", ">=14", "Cannot operate on the batch dimension."),
    "REDUCE_MIN": OpRule("ReduceMin", ">=14", "Cannot operate on the batch dimension."),
    "RELU": OpRule("ReLu"),
    "RELU6": OpRule("ReLu6"),
    "RELU_N1_TO_1": OpRule("ReLuN1To1"),
    "RESHAPE": OpRule("Reshape", limitation="Certain reshapes might not be mapped for large tensor sizes."),
    "RESIZE_BILINEAR": OpRule("ResizeBilinear", limitation=(
        "Input/output is a 3-dimensional tensor. Depending on input/output size, this operation may not be "
        "mapped to the Edge TPU to avoid loss in precision.")),
    "RESIZE_NEAREST_NEIGHBOR": OpRule("ResizeNearestNeighbor", limitation=(
        "Input/output is a 3-dimensional tensor. Depending on input/output size, this operation may not be "
        "mapped to the Edge TPU to avoid loss in precision.")),
    "RSQRT": OpRule("Rsqrt", ">=14"),
    "SLICE": OpRule("Slice"),
    "SOFTMAX": OpRule("Softmax", limitation="Supports only 1-D input tensor with a max of 16,000 elements."),
    "SPACE_TO_DEPTH": OpRule("SpaceToDepth"),
    "SPLIT": OpRule("Split", limitation="No splitting in batch dimension."),
    "SQUARED_DIFFERENCE": OpRule("SquaredDifference", ">=14"),
    "SQUEEZE": OpRule("Squeeze", ">=13"),
    "STRIDED_SLICE": OpRule("StridedSlice", limitation="Supports only 4-D input tensor."),
    "SUB": OpRule("Sub"),
    "SUM": OpRule("Sum", ">=13", "No reduction in batch dimension."),
    "TANH": OpRule("Tanh"),
    "TRANSPOSE": OpRule("Transpose", ">=14"),
    "TRANSPOSE_CONV": OpRule("TransposeConv", ">=13"),
}

#: ops with no fused activation allowed (table limitations)
NO_FUSED_ACTIVATION = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION")
#: (op, input index) operands that are int32 by design (biases, sizes, shapes, axes, paddings)
INT32_OPERANDS = {("CONV_2D", 2), ("DEPTHWISE_CONV_2D", 2), ("FULLY_CONNECTED", 2), ("TRANSPOSE_CONV", 3),
                  ("TRANSPOSE_CONV", 0), ("RESIZE_BILINEAR", 1), ("RESIZE_NEAREST_NEIGHBOR", 1), ("RESHAPE", 1),
                  ("PAD", 1), ("MEAN", 1), ("SUM", 1), ("REDUCE_MAX", 1), ("REDUCE_MIN", 1), ("EXPAND_DIMS", 1),
                  ("SPLIT", 0), ("SLICE", 1), ("SLICE", 2), ("STRIDED_SLICE", 1), ("STRIDED_SLICE", 2),
                  ("STRIDED_SLICE", 3), ("TRANSPOSE", 1)}
INTEGER_TYPES = ("INT8", "UINT8")


# --- flatbuffer reading --------------------------------------------------------------------

def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:  # pragma: no cover - environment dependent
        s = require("tflite_runtime.schema_py_generated", "tflite", "the Edge TPU check")
    return s


@dataclass
class _Tensor:
    index: int
    name: str
    type: str
    shape: list
    signature: list | None
    constant: bool


def _short(name: str) -> str:
    """A readable layer name from a litert-torch tensor name (module path, first alias)."""
    name = name.split(";")[0]
    name = re.sub(r"litert_torch\._convert\.to_channel_last_io\.ChannelLastIOWrapper/", "", name)
    name = re.sub(r"\b(?:torch\.nn\.modules|edgeseg\.models)\.[a-z_0-9]+\.", "", name)
    return name


def read_model(path) -> tuple[list[dict], list[_Tensor]]:
    """Ops (in execution order) and tensors of subgraph 0 of a .tflite file."""
    s = _schema()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"'{path}' does not exist: give a .tflite file")
    buf = path.read_bytes()
    try:
        model = s.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as exc:
        raise ConfigError(f"'{path}' is not a TFLite flatbuffer ({type(exc).__name__}): give a .tflite file") from exc
    op_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    sg = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(sg.tensors):
        buffer = model.buffers[t.buffer] if model.buffers is not None and t.buffer < len(model.buffers) else None
        constant = bool(buffer is not None and ((buffer.data is not None and len(buffer.data) > 0)
                                                or getattr(buffer, "size", 0)))
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(_Tensor(i, name, type_names.get(t.type, str(t.type)),
                               [int(v) for v in (t.shape if t.shape is not None else [])],
                               [int(v) for v in t.shapeSignature] if t.shapeSignature is not None else None,
                               constant))
    ops = []
    for i, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM":
            cc = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            name = f"CUSTOM({cc})"
        ops.append({"index": i, "op": name,
                    "inputs": [int(v) for v in (op.inputs if op.inputs is not None else [])],
                    "outputs": [int(v) for v in (op.outputs if op.outputs is not None else [])],
                    "options": op.builtinOptions})
    return ops, tensors


# --- the check ------------------------------------------------------------------------------

def _op_problems(op: dict, tensors: list[_Tensor], max_resize: int) -> list[tuple[str, str, str]]:
    """(severity, rule, reason) tuples for one op."""
    name = op["op"]
    opts = op["options"]
    out: list = []
    rule = SUPPORTED_OPS.get(name)
    if rule is None:
        out.append(("error", "R1 op list", f"{name} is not in the Edge TPU's supported operations"))
        return out
    tin = [tensors[i] for i in op["inputs"] if i >= 0]
    tout = [tensors[i] for i in op["outputs"]]
    for k, t in enumerate(tin):
        if t.type in INTEGER_TYPES:
            continue
        if t.type == "INT32" and (name, k) in INT32_OPERANDS:
            continue
        out.append(("error", "R2 full integer", f"input {k} '{_short(t.name)}' is {t.type}, not int8/uint8"))
    for t in tout:
        if t.type not in INTEGER_TYPES:
            out.append(("error", "R2 full integer", f"output '{_short(t.name)}' is {t.type}, not int8/uint8"))
    for t in [t for t in tin if not t.constant] + tout:
        if len(t.shape) > 3 and sum(1 for d in t.shape[:-3] if d > 1):
            out.append(("error", "R3 rank", f"tensor '{_short(t.name)}' {t.shape}: more than the 3 innermost "
                                            f"dimensions are larger than 1"))
        if t.signature is not None and any(d < 0 for d in t.signature):
            out.append(("error", "R4 static shapes", f"tensor '{_short(t.name)}' has a dynamic shape "
                                                     f"{t.signature}"))
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        w = tin[1] if len(tin) > 1 else None  # TRANSPOSE_CONV: (output_shape, weights, input, bias)
        if w is not None and not w.constant:
            out.append(("error", "R5 constant parameters", f"weights '{_short(w.name)}' are not a constant"))
    fused = getattr(opts, "fusedActivationFunction", 0) if opts is not None else 0
    if name in NO_FUSED_ACTIVATION and fused:
        out.append(("error", "limitation", f"{rule.doc_name} with a fused activation function"))
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and opts is not None:
        if getattr(opts, "dilationHFactor", 1) != getattr(opts, "dilationWFactor", 1):
            out.append(("error", "limitation", "different dilation in x and y"))
    if name == "CONCATENATION":
        consts = [t for t in tin if t.constant]
        if consts and len(tin) != 2:
            out.append(("error", "limitation", "a constant input with more than 2 inputs (only a 2-input zero "
                                               "pad maps)"))
    if name == "SOFTMAX" and tin:
        n_big = sum(1 for d in tin[0].shape if d > 1)
        size = 1
        for d in tin[0].shape:
            size *= d
        if n_big > 1 or size > 16000:
            out.append(("error", "limitation", f"Softmax over {tin[0].shape}: only 1-D with at most 16,000 "
                                               f"elements maps"))
    if name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "TRANSPOSE_CONV") and tout:
        shape = tout[0].shape
        if len(shape) == 4 and max(shape[1], shape[2]) > max_resize:
            out.append(("warning", "resize size (heuristic)",
                        f"output {shape[1]}x{shape[2]} is larger than {max_resize} px: large "
                        f"{rule.doc_name} ops are likely left unmapped (Coral's DeepLabv3 513x513 runs its final "
                        f"upsample on the CPU); drop the final upsample (low_res_output)"))
    return out


def check_edgetpu(path, *, max_resize: int = DEFAULT_MAX_RESIZE, strict_heuristics: bool = True) -> dict:
    """Edge TPU compatibility report of a .tflite file.

    ``ok`` is true when every op maps by the documented rules and no heuristic warning
    fired (``strict_heuristics=False`` ignores warnings for ``ok``). ``problems`` lists each
    offending op with its index, op name, layer (its output tensor) and tensors;
    ``first_unmapped`` is where the graph leaves the TPU (that op and every later one
    runs on the CPU)."""
    ops, tensors = read_model(path)
    problems = []
    counts: dict = {}
    full_integer = True
    first = None
    for op in ops:
        counts[op["op"]] = counts.get(op["op"], 0) + 1
        issues = _op_problems(op, tensors, max_resize)
        if any(r == "R2 full integer" for _, r, _ in issues):
            full_integer = False
        if not issues:
            continue
        layer = _short(tensors[op["outputs"][0]].name) if op["outputs"] else ""
        entry = {"index": op["index"], "op": op["op"], "layer": layer,
                 "inputs": [_short(tensors[i].name) for i in op["inputs"] if i >= 0],
                 "outputs": [_short(tensors[i].name) for i in op["outputs"]],
                 "severity": "error" if any(s == "error" for s, _, _ in issues) else "warning",
                 "rules": sorted({r for _, r, _ in issues}),
                 "reasons": [m for _, _, m in issues]}
        problems.append(entry)
        blocking = entry["severity"] == "error" or strict_heuristics
        if first is None and blocking:
            first = entry
    n = len(ops)
    on_tpu = first["index"] if first is not None else n
    transposes = counts.get("TRANSPOSE", 0)
    if first is None:
        summary = f"all {n} ops map to the Edge TPU by the documented rules"
    else:
        summary = (f"op {first['index']} {first['op']} (layer '{first['layer']}') cannot map: "
                   f"{first['reasons'][0]}; it and the {n - on_tpu - 1} ops after it run on the CPU "
                   f"({on_tpu}/{n} ops on the Edge TPU)")
    return {
        "ok": first is None,
        "full_integer": full_integer,
        "num_ops": n,
        "ops": dict(sorted(counts.items())),
        "ops_on_tpu": on_tpu,
        "ops_on_cpu": n - on_tpu,
        "first_unmapped": first,
        "problems": problems,
        "transpose_ops": transposes,
        "max_resize": max_resize,
        "summary": summary,
        "note": "pre-flight check from Coral's documented rules (resize/transpose-conv size is a heuristic); "
                "edgetpu_compiler's own report is the ground truth",
        "source": SOURCE,
    }


# --- edgetpu_compiler ---------------------------------------------------------------------

DEFAULT_COMMAND = "edgetpu_compiler -s -o {out_dir} {model}"
_TABLE_LINE = re.compile(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(\S.*?)\s*$")
_KV_LINE = re.compile(r"^([A-Za-z][A-Za-z \-/()]+?):\s*(.+?)\s*$")


def compiler_command(model: Path, out_dir: Path, template: str | None = None) -> str:
    template = template or DEFAULT_COMMAND
    return template.format(model=shlex.quote(str(model)), out_dir=shlex.quote(str(out_dir)))


def parse_compiler_report(text: str) -> dict:
    """The summary fields and the ``Operator / Count / Status`` table of ``edgetpu_compiler -s``."""
    fields, table = {}, []
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("Operator") and "Status" in line:
            in_table = True
            continue
        m = _TABLE_LINE.match(line) if in_table else None
        if m:
            table.append({"operator": m.group(1), "count": int(m.group(2)), "status": m.group(3)})
            continue
        kv = _KV_LINE.match(line)
        if kv:
            fields[kv.group(1).strip()] = kv.group(2)
    mapped = sum(r["count"] for r in table if r["status"].startswith("Mapped to Edge TPU"))
    unmapped = [r for r in table if not r["status"].startswith("Mapped to Edge TPU")]

    def num(key):
        v = fields.get(key)
        return int(v) if v is not None and v.isdigit() else None

    return {"fields": fields, "operators": table, "mapped_ops": mapped,
            "unmapped": unmapped,
            "ops_on_tpu": num("Number of operations that will run on Edge TPU"),
            "ops_on_cpu": num("Number of operations that will run on CPU"),
            "subgraphs": num("Number of Edge TPU subgraphs"),
            "all_mapped": bool(table) and not unmapped}


def run_compiler(model, out_dir, *, command: str | None = None, timeout: int = 600, cwd=None) -> dict:
    """Run ``edgetpu_compiler`` when it is on PATH; otherwise return the command to run.

    With ``cwd`` (the artifact folder) the command names ``model`` and ``out_dir`` relative
    to it and runs there, so the command in the manifest stays valid after the artifact is
    moved (builds write to a temporary folder, then rename it).
    Returns ``{"command", "ran", "cwd"?, "reason"?, "report"?, "output_model"?, "log"?}``;
    with ``cwd`` the paths in it are relative to ``cwd``."""
    model, out_dir = Path(model), Path(out_dir)
    run_model, run_out = model, out_dir
    if cwd is not None:
        cwd = Path(cwd)
        run_model, run_out = model.relative_to(cwd), out_dir.relative_to(cwd)
    cmd = compiler_command(run_model, run_out, command)
    exe = shutil.which("edgetpu_compiler")
    if exe is None:
        return {"name": "edgetpu_compiler", "command": cmd, "ran": False, "reason": NO_COMPILER,
                "install": COMPILER_URL, **({"cwd": "the artifact folder"} if cwd is not None else {})}
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(shlex.split(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    text = proc.stdout + proc.stderr
    result = {"name": "edgetpu_compiler", "command": cmd, "ran": True, "returncode": proc.returncode,
              "report": parse_compiler_report(text), "stdout": text[-4000:],
              **({"cwd": "the artifact folder"} if cwd is not None else {})}
    compiled = out_dir / f"{model.stem}_edgetpu.tflite"
    if proc.returncode == 0 and compiled.is_file():
        result["output_model"] = str(run_out / compiled.name)
        log = out_dir / f"{model.stem}_edgetpu.log"
        if log.is_file():
            result["log"] = str(run_out / log.name)
    else:
        result["reason"] = f"edgetpu_compiler exited with {proc.returncode}"
    return result


__all__ = ["check_edgetpu", "read_model", "run_compiler", "parse_compiler_report", "compiler_command",
           "SUPPORTED_OPS", "SOURCE"]
