"""``edgeseg compress``: int8 quantization (NNCF PTQ, accuracy-controlled PTQ, QAT) and
pruning (structured channels / unstructured) of a checkpoint or zoo model, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from edgeseg.cli.own import code_flag, takes_your_model


#: the build target for each quantization preset (edgeseg/compress/nncf_setup.py)
BUILD_TARGET = {"cpu": "openvino-cpu", "npu": "openvino-npu", "edgetpu": "coral", "jetson": "jetson",
                "any": "onnxruntime-cpu"}


def _next_steps(report: dict, data) -> str | None:
    """Build and bench the best compressed checkpoint (highest val mIoU): the commands a user
    most likely runs next."""
    import shlex

    files = {k: v for k, v in (report.get("files") or {}).items() if str(v).endswith(".pt")}
    if not files:
        return None
    best = max(files, key=lambda k: (report["variants"].get(k) or {}).get("miou") or 0.0)
    target = BUILD_TARGET.get((report.get("target") or {}).get("name"), "openvino-cpu")
    ckpt, art, d = shlex.quote(f"{report['out']}/{files[best]}"), f"artifacts/{best}-{target}", shlex.quote(str(data))
    code = code_flag((report.get("model") or {}).get("name"))
    return (f"next: edgeseg build {ckpt} --target {target} --data {d} --out {art}{code}\n"
            f"      edgeseg bench {art} --data {d} --html {art}/report.html")


@takes_your_model("source", data="data")
def compress_cmd(
    source: Annotated[str, typer.Argument(help="Checkpoint file (.pt) or zoo name.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset folder (train split: calibration and "
                                                      "fine-tuning; val split: mIoU).")] = ...,
    qat: Annotated[bool, typer.Option("--qat", help="Quantization-aware training to int8.")] = False,
    ptq: Annotated[bool, typer.Option("--ptq", help="Post-training int8 quantization (nncf.quantize).")] = False,
    max_drop: Annotated[Optional[float], typer.Option(
        "--max-drop", help="Accuracy-controlled PTQ on OpenVINO: largest absolute val mIoU drop allowed.")] = None,
    prune: Annotated[Optional[float], typer.Option("--prune", help="Fraction of channels (structured) or "
                                                                   "weights (unstructured) to remove, (0, 0.9].")] = None,
    prune_mode: Annotated[str, typer.Option("--prune-mode", help="structured | unstructured")] = "structured",
    epochs: Annotated[float, typer.Option(help="Fine-tuning epochs for QAT and after pruning.")] = 1.0,
    steps: Annotated[int, typer.Option(help="Fine-tuning steps (overrides --epochs when > 0).")] = 0,
    lr: Annotated[Optional[float], typer.Option(help="Fine-tuning learning rate (default 1e-5 QAT, 1e-4 pruning).")] = None,
    prune_epochs: Annotated[Optional[float], typer.Option(
        help="Fine-tuning epochs of the pruned model (default --epochs); pruning usually needs more.")] = None,
    prune_lr: Annotated[Optional[float], typer.Option(
        help="Learning rate for the pruned model's fine-tuning (default --lr, else 1e-4).")] = None,
    batch_size: Annotated[int, typer.Option(help="Fine-tuning batch size.")] = 4,
    target: Annotated[str, typer.Option("--target", help=(
        "Quantization preset: cpu | npu | jetson | any (NNCF), or edgetpu / coral (PT2E with "
        "litert-torch's quantizer; build the result with --target coral)."))] = "cpu",
    ignore: Annotated[Optional[List[str]], typer.Option(
        "--ignore", help="Keep in fp32: a module path (head), an NNCF node name (head/cls/conv2d/0) or "
                         "re:REGEX. Repeatable.")] = None,
    sensitivity: Annotated[bool, typer.Option("--sensitivity", help="Search which module groups to keep in "
                                                                     "fp32 (PTQ with one group ignored at a time).")] = False,
    val_images: Annotated[Optional[int], typer.Option(help="Use the first N val images only.")] = None,
    calib_images: Annotated[int, typer.Option(help="Calibration images (train split).")] = 32,
    runs: Annotated[int, typer.Option(help="Latency runs per variant and runtime.")] = 30,
    threads: Annotated[int, typer.Option(help="CPU threads for latency runs.")] = 1,
    out: Annotated[Path, typer.Option(help="Output folder (checkpoints, report.json, report.md).")] = Path("runs/compress"),
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
):
    """Quantize (int8) and/or prune a model; write compressed checkpoints and a report."""
    from edgeseg.compress_run import compress

    report = compress(source, data, qat=qat, ptq=ptq, max_drop=max_drop, prune=prune, prune_mode=prune_mode,
                      epochs=epochs, steps=steps, lr=lr, prune_epochs=prune_epochs, prune_lr=prune_lr,
                      batch_size=batch_size, target=target, ignore=ignore or (),
                      sensitivity=sensitivity, out=out, val_images=val_images, calib_images=calib_images,
                      runs=runs, threads=threads, force=force, log=typer.echo)
    for name, row in report["variants"].items():
        ov = (row.get("latency_openvino_cpu") or {}).get("median_ms")
        ort = (row.get("latency_onnxruntime_cpu") or {}).get("median_ms")
        typer.echo(f"  {name:<16} mIoU {row['miou'] or 0:.4f}  params {row.get('params') or '-'}  "
                   f"openvino-cpu {'n/a' if ov is None else f'{ov:.2f} ms'}  "
                   f"onnxruntime-cpu {'n/a' if ort is None else f'{ort:.2f} ms'}")
    steps = _next_steps(report, data)
    if steps:
        typer.echo(steps, err=True)


def register(app: typer.Typer) -> None:
    app.command("compress")(compress_cmd)
