"""``edgeseg build``: a checkpoint (or zoo model) -> a verified artifact for one target;
``edgeseg targets``: the target profiles and whether their runtime runs here."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.cli.own import takes_your_model
from edgeseg.cli.tables import JsonOpt


def _default_source(target: str) -> str:
    from edgeseg.targets import default_model

    return default_model(target)


@takes_your_model("source", data="data", size="img_size")
def build_cmd(
    source: Annotated[Optional[str], typer.Argument(
        help="Checkpoint file, zoo name or ONNX model (default: the zoo's best model).")] = None,
    target: Annotated[str, typer.Option("--target", "-t", help="Target profile (see `edgeseg targets`).")] = ...,
    precision: Annotated[Optional[str], typer.Option(help="fp32 | fp16 | bf16 | int8, as the target has them (default: the target's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Artifact folder (default: artifacts/<model>-<target>-<precision>).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder: calibration (int8) and parity images.")] = None,
    split: Annotated[str, typer.Option(help="Split of --data for the parity check (mIoU).")] = "val",
    calib: Annotated[Optional[Path], typer.Option(help="Calibration-set definition (YAML; default calib/default.yaml).")] = None,
    calib_images: Annotated[Optional[int], typer.Option(help="Number of calibration images (overrides the definition).")] = None,
    img_size: Annotated[Optional[str], typer.Option(help="Static input HxW (default: the checkpoint's, rounded up to the stride).")] = None,
    parity_images: Annotated[int, typer.Option(help="Images compared with PyTorch fp32.")] = 8,
    allow_drop: Annotated[bool, typer.Option("--allow-drop", help="Keep the artifact even when parity fails.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for export and parity runs.")] = None,
    keep_float: Annotated[Optional[str], typer.Option(
        "--keep-float", help="int8: leave these layers (ONNX node names, comma-separated) in float, or 'auto': "
                             "the layers adding most error, one at a time, until parity passes.")] = None,
    max_float_layers: Annotated[int, typer.Option(help="--keep-float auto: at most this many layers in float.")] = 8,
):
    """Export, quantize (int8: with --data), verify against PyTorch and write an artifact folder."""
    from edgeseg.build import build, summarize

    if source is None:
        source = _default_source(target)
        typer.echo(f"source: zoo model '{source}' (default)")
    from edgeseg.doctor import precision_warning

    warning = precision_warning(target, precision)
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    report: list[str] = []
    out_dir = build(source, target, precision=precision, out=out, data=data, split=split, calib=calib,
                    calib_images=calib_images, input_size=img_size, allow_drop=allow_drop,
                    parity_images=parity_images, threads=threads, force=force, keep_float=keep_float,
                    max_float_layers=max_float_layers, report=report)
    s = summarize(out_dir)
    for line in report:
        typer.echo(line)
    typer.echo(f"built {s['out']}  (target {s['target']}, {s['format']}, {s['precision']})")
    for name, size in s["files"].items():
        typer.echo(f"  {name:<24} {size / 1e6:8.2f} MB")
    p = s["parity"] or {}
    if p.get("ran"):
        ref = str(p.get("reference") or "pytorch fp32").replace("pytorch", "PyTorch", 1)
        line = f"parity vs {ref} ({p.get('image_source')}): agreement {p['agreement']:.4f}"
        if p.get("max_abs_logit_diff") is not None:
            line += f", max |logit diff| {p['max_abs_logit_diff']:.4g}"
        if p.get("miou_reference") is not None:
            line += f", mIoU {p['miou_reference']:.4f} -> {p['miou_artifact']:.4f}"
        typer.echo(line + ("" if p.get("passed") else "  (FAILED, kept by --allow-drop)"))
    else:
        typer.echo(f"parity: not run ({p.get('reason')})")
    if s["kept_in_float"]:
        typer.echo(f"kept in float: {', '.join(s['kept_in_float'])}")
    ex = s.get("execution") or {}
    if ex.get("inference_precision"):
        typer.echo(f"ran as: {ex['device']}, computed in {ex['inference_precision']} ({ex['cpu']}, ISA {ex['isa']})")
    c = s.get("compiler")
    if c and c.get("command"):
        cmd = f"cd {shlex.quote(s['out'])} && {c['command']}" if c.get("cwd") else c["command"]
        typer.echo(f"compile on the device: {cmd}" if not c.get("ran") else f"compiled: {cmd}")
    data_arg = f" --data {data}" if data else " --data DIR"
    typer.echo(f"next: edgeseg bench {s['out']}{data_arg}\n      edgeseg demo --artifact {s['out']} --source 0")


def targets_cmd(as_json: Annotated[bool, JsonOpt] = False):
    """List target profiles: format, precisions, layout, shape, whether the runtime runs here, and
    which precisions run here but slower than fp32 (a short measured probe, cached)."""
    from edgeseg.cli.tables import emit
    from edgeseg.targets import list_targets, load_target, runtime_available

    from edgeseg.doctor import slower_than_fp32

    records = []
    for name in list_targets():
        p = load_target(name)
        ok, why = runtime_available(p)
        slow = slower_than_fp32(p) if ok else {}  # a measured probe, cached
        records.append({"name": name, "format": p.format, "precisions": ",".join(p.precisions), "layout": p.layout,
                        "shape": p.shape, "runtime": p.runtime + (f" ({p.device})" if p.device else ""),
                        "available here": "yes" if ok else f"no: {why}",
                        "slower than fp32 here": ", ".join(f"{k} ({v['ratio']:.2f}x)" for k, v in slow.items()) or "-"})
    emit("targets (profiles in edgeseg/targets/*.yaml)", records, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("build")(build_cmd)
    app.command("targets")(targets_cmd)
