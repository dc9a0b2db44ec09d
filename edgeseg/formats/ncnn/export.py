"""PyTorch -> static ONNX -> ncnn (``model.ncnn.param`` + ``model.ncnn.bin``) with pnnx.

pnnx (the converter ncnn recommends, on the package index as ``pnnx``) reads the ONNX file
edgeseg's other ONNX targets write, simplifies it and writes ncnn's files. It runs as a
child process in a scratch folder inside the build's temp folder, with a time limit; only
the two ncnn files are kept. The graph's blob names (``in0`` / ``out0`` as pnnx writes
them) are read back from the .param file and recorded in the manifest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from edgeseg.errors import require
from edgeseg.formats.base import BuildError, ExportResult, export_step
from edgeseg.formats.onnx import check_forbidden, export_fp32

PRECISIONS = ("fp32", "fp16")
#: pnnx converts an ENet in about 5 s here; a converter that hangs is stopped after this
PNNX_TIMEOUT_S = 600


def pnnx_executable() -> str:
    """The pnnx program: the one inside the pnnx package (the same version as its Python side)."""
    pnnx = require("pnnx", "ncnn", "an ncnn build")
    exe = Path(pnnx.__file__).parent / "pnnx"
    if exe.is_file() and os.access(exe, os.X_OK):
        return str(exe)
    found = shutil.which("pnnx")
    if not found:
        raise BuildError("pnnx is installed but its converter program is missing: reinstall it "
                         "(pip install 'edgeseg[ncnn]')")
    return found


def blob_names(param: Path) -> tuple[str, str]:
    """The input and output blob names of an ncnn .param file (its Input layer's top blob, and
    the one blob no layer consumes)."""
    produced, consumed, inputs = [], set(), []
    lines = param.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or lines[0].strip() != "7767517":
        raise BuildError(f"pnnx wrote '{param.name}' without ncnn's magic number: the conversion failed")
    for line in lines[2:]:
        f = line.split()
        if len(f) < 4:
            continue
        kind, n_in, n_out = f[0], int(f[2]), int(f[3])
        bottoms, tops = f[4:4 + n_in], f[4 + n_in:4 + n_in + n_out]
        consumed.update(bottoms)
        produced.extend(tops)
        if kind == "Input":
            inputs.extend(tops)
    outputs = [b for b in produced if b not in consumed]
    if len(inputs) != 1 or len(outputs) != 1:
        raise BuildError(f"the ncnn graph has {len(inputs)} inputs and {len(outputs)} outputs (one of each "
                         f"expected): pnnx did not convert the model whole")
    return inputs[0], outputs[0]


def convert(onnx_path: Path, input_size, precision: str, work: Path) -> tuple[Path, Path]:
    """Run pnnx on ``onnx_path`` inside ``work``; returns the .param and .bin it wrote."""
    h, w = input_size
    cmd = [pnnx_executable(), onnx_path.name, f"inputshape=[1,3,{int(h)},{int(w)}]",
           f"fp16={1 if precision == 'fp16' else 0}"]
    try:
        run = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BuildError(f"pnnx did not finish within {PNNX_TIMEOUT_S} s") from None
    stem = onnx_path.stem
    param, weights = work / f"{stem}.ncnn.param", work / f"{stem}.ncnn.bin"
    if run.returncode != 0 or not param.is_file() or not weights.is_file():
        tail = [ln for ln in (run.stderr or run.stdout or "").splitlines() if ln.strip()][-1:] or ["no output"]
        raise BuildError(f"pnnx could not convert the model (exit {run.returncode}): {tail[0][:300]}")
    return param, weights


def export(model, info, *, input_size, precision: str, out_dir: Path, profile, calib=None,
           quantized: dict | None = None) -> ExportResult:
    if precision not in PRECISIONS:
        raise BuildError(f"the ncnn unit builds {', '.join(PRECISIONS)}, not '{precision}'")
    out_dir = Path(out_dir)
    work = out_dir / ".pnnx"
    work.mkdir()
    try:
        onnx_path = export_fp32(model, input_size, work / "model.onnx", opset=int(profile.opset or 17))
        check_forbidden(onnx_path, profile)
        with export_step(f"pnnx conversion to ncnn ({precision} weights)", out_dir / "model.ncnn.param"):
            param, weights = convert(onnx_path, input_size, precision, work)
            os.replace(param, out_dir / "model.ncnn.param")
            os.replace(weights, out_dir / "model.ncnn.bin")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    param, weights = out_dir / "model.ncnn.param", out_dir / "model.ncnn.bin"
    blob_in, blob_out = blob_names(param)
    layers = int(re.split(r"\s+", param.read_text(encoding="utf-8").splitlines()[1].strip())[0])
    details = {
        "files": {"model": param.name, "weights": weights.name},
        "input": {"name": blob_in},
        "output": {"name": blob_out},
        "ncnn": {"converter": "pnnx (from the ONNX file, opset %d)" % int(profile.opset or 17),
                 "layers": layers, "weights": "fp16" if precision == "fp16" else "fp32"},
    }
    return ExportResult(param, [param, weights], precision, details)
