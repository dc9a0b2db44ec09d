"""``edgeseg train``, ``edgeseg eval`` and ``edgeseg predict``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.errors import ConfigError


class Optim(str, Enum):
    adamw = "adamw"
    sgd = "sgd"


class Schedule(str, Enum):
    poly = "poly"
    cosine = "cosine"


def _parse_kwargs(items: list[str] | None) -> dict:
    """``--model-arg width_mult=0.5`` -> {"width_mult": 0.5} (values parsed as JSON when they can be)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--model-arg '{item}' is not KEY=VALUE (e.g. --model-arg output_stride=8)")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def train_cmd(
    model: Annotated[Optional[str], typer.Option(help="Registered model name (see `edgeseg models`).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder (CamVid, Cityscapes, VOC or images/+masks/).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs to train (on --resume: the new total).")] = None,
    img_size: Annotated[Optional[str], typer.Option(help="Training crop HxW; default: image size rounded up to the stride.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step (summed over processes under torchrun).")] = 8,
    loss: Annotated[str, typer.Option(help="Loss spec, e.g. ce, ohem, wce:enet+0.5*dice.")] = "ce",
    optimizer: Annotated[Optim, typer.Option(help="Optimizer.")] = Optim.adamw,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate (default 2e-3 AdamW, 1e-2 SGD).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (default 1e-4 AdamW, 5e-4 SGD).")] = None,
    schedule: Annotated[Schedule, typer.Option(help="Learning-rate schedule after warm-up.")] = Schedule.poly,
    warmup_epochs: Annotated[float, typer.Option(help="Linear warm-up length in epochs.")] = 1.0,
    out: Annotated[Optional[Path], typer.Option(help="Output folder for last.pt, best.pt, metrics.jsonl.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue from a last.pt.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 2,
    patience: Annotated[int, typer.Option(help="Stop after this many evaluations without a better val mIoU (0 = never).")] = 0,
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA.")] = True,
    sync_bn: Annotated[bool, typer.Option(help="SyncBatchNorm under torchrun.")] = False,
    val_every: Annotated[int, typer.Option(help="Validate every N epochs.")] = 1,
    scale: Annotated[str, typer.Option(help="Random scale range MIN,MAX.")] = "0.5,2.0",
    rotate: Annotated[float, typer.Option(help="Random rotation limit in degrees (0 = off).")] = 0.0,
    elastic: Annotated[bool, typer.Option(help="Elastic deformation.")] = False,
    hflip: Annotated[bool, typer.Option(help="Random horizontal flip.")] = True,
    color_jitter: Annotated[bool, typer.Option(help="Colour jitter.")] = True,
    model_arg: Annotated[Optional[list[str]], typer.Option(help="Model argument KEY=VALUE (repeatable).")] = None,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps per epoch (0 = one pass over the data).")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Train a segmentation model; writes last.pt, best.pt (by val mIoU) and metrics.jsonl."""
    from edgeseg.train import TrainConfig, parse_size, train

    if resume is None and (model is None or data is None):
        raise ConfigError("give --model and --data (or --resume LAST.pt)")
    try:
        lo, hi = (float(v) for v in scale.split(","))
    except ValueError:
        raise ConfigError(f"--scale '{scale}' is not MIN,MAX (e.g. 0.5,2.0)") from None
    cfg = TrainConfig(
        model=model or "", data=str(data or ""), epochs=epochs or (0 if resume else 100),
        img_size=parse_size(img_size), batch_size=batch_size, loss=loss, optimizer=optimizer.value, lr=lr,
        weight_decay=weight_decay, schedule=schedule.value, warmup_epochs=warmup_epochs,
        out=str(out) if out else ("" if resume else f"runs/{model}"), device=device, seed=seed,
        workers=workers, patience=patience, amp=amp, sync_bn=sync_bn, val_every=val_every, scale=(lo, hi),
        rotate=rotate, elastic=elastic, hflip=hflip, color_jitter=color_jitter,
        model_kwargs=_parse_kwargs(model_arg), steps_per_epoch=steps_per_epoch, progress=progress,
    )
    result = train(cfg, resume=resume, log=typer.echo)
    from edgeseg.train import distributed

    if distributed.is_main():
        typer.echo(f"best val mIoU {result['best_miou']:.4f} at epoch {result['best_epoch']}; "
                   f"checkpoints in {result['out']}")


def eval_cmd(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint (.pt).")],
    data: Annotated[Path, typer.Option(help="Dataset folder.")],
    split: Annotated[str, typer.Option(help="Split to score.")] = "val",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 4,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    boundary_f1: Annotated[Optional[int], typer.Option(help="Also compute boundary F1 with this pixel tolerance.")] = None,
):
    """Score a checkpoint: per-class IoU table, mIoU, pixel accuracy."""
    from rich.console import Console
    from rich.table import Table

    from edgeseg.evaluate import evaluate, write_json

    result = evaluate(checkpoint, data, split, batch_size=batch_size, device=device,
                      boundary_tolerance=boundary_f1)
    table = Table(title=f"{result['model']} on {data} / {split} ({result['images']} images)")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    table.add_column("accuracy", justify="right")
    for name, iou in result["per_class_iou"].items():
        acc = result.get("per_class_accuracy", {}).get(name)
        table.add_row(name, "-" if iou is None else f"{iou:.4f}", "-" if acc is None else f"{acc:.4f}")
    table.add_section()
    table.add_row("mIoU", f"{result['miou']:.4f}", "")
    table.add_row("pixel accuracy", f"{result['pixel_accuracy']:.4f}", "")
    if "boundary_f1" in result:
        table.add_row(f"boundary F1 ({boundary_f1}px)", f"{result['boundary_f1']:.4f}", "")
    Console().print(table)
    if json_out:
        write_json(result, json_out)
        typer.echo(f"wrote {json_out}")


def predict_cmd(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint (.pt).")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("predictions"),
    alpha: Annotated[float, typer.Option(help="Overlay opacity (0-1).")] = 0.5,
):
    """Write class-index masks, colour masks and overlays for images."""
    from edgeseg.predict import predict_files
    from edgeseg.train.checkpoint import load_model

    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha must be between 0 and 1, got {alpha}")
    model, info, _ = load_model(checkpoint)
    for item in predict_files(model, info, images, out, alpha=alpha):
        top = ", ".join(f"{k} {v:.0%}" for k, v in sorted(item["classes"].items(), key=lambda kv: -kv[1])[:3])
        typer.echo(f"{item['image']} -> {item['mask']} ({top})")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
    app.command("predict")(predict_cmd)
