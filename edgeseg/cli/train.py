"""``edgeseg train``, ``edgeseg eval`` and ``edgeseg predict``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.cli.own import (BgrOpt, MeanOpt, OutputOpt, RangeOpt, StdOpt, allow_model_code, code_flag, model_input,
                             own_model_kwargs, takes_your_model)
from edgeseg.cli.tables import JsonOpt
from edgeseg.errors import ConfigError


class Optim(str, Enum):
    adamw = "adamw"
    adam = "adam"
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
    model: Annotated[Optional[str], typer.Option(help="Registered model name (see `edgeseg models`), or your own: "
                                                      "FILE.py:FACTORY or package.module:FACTORY.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder (CamVid, Cityscapes, VOC or images/+masks/).")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="Start from a named recipe (see `edgeseg recipes`); options given here override it.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs to train [100] (on --resume: the new total).")] = None,
    img_size: Annotated[Optional[str], typer.Option(help="Training crop HxW [image size rounded up to the stride].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step, summed over processes under torchrun [8].")] = None,
    loss: Annotated[Optional[str], typer.Option(help="Loss spec, e.g. ce, ohem, wce:enet+0.5*dice, or auto (chosen from "
                                                    "the class balance, as `edgeseg data check` suggests) [ce].")] = None,
    optimizer: Annotated[Optional[Optim], typer.Option(help="Optimizer [adamw].")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate [2e-3 AdamW, 1e-3 Adam, 1e-2 SGD].")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay [1e-4 AdamW, 2e-4 Adam (as L2), "
                                                               "5e-4 SGD].")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(help="Keep an exponential moving average of the weights with "
                                                            "this decay per step (e.g. 0.999), scored at each "
                                                            "evaluation and saved as ema.pt; 0 = off [0].")] = None,
    schedule: Annotated[Optional[Schedule], typer.Option(help="Learning-rate schedule after warm-up [poly].")] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option(help="Linear warm-up length in epochs [1].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder for last.pt, best.pt, metrics.jsonl [runs/MODEL].")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue from a last.pt.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N or auto [auto].")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed [0].")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading worker processes [2].")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Stop after this many evaluations without a better val mIoU; 0 = never [0].")] = None,
    amp: Annotated[Optional[bool], typer.Option(help="Mixed precision on CUDA [on].")] = None,
    cpu_precision: Annotated[Optional[str], typer.Option(
        "--cpu-precision", help="On a CPU: auto (bf16 autocast + channels-last where the CPU has AMX, "
                                "fp32 elsewhere: bf16 measured slower without AMX), bf16, or fp32 [auto].")] = None,
    sync_bn: Annotated[Optional[bool], typer.Option(help="SyncBatchNorm under torchrun [off].")] = None,
    val_every: Annotated[Optional[int], typer.Option(help="Validate every N epochs [1].")] = None,
    scale: Annotated[Optional[str], typer.Option(help="Random scale range MIN,MAX [0.5,2.0].")] = None,
    rotate: Annotated[Optional[float], typer.Option(help="Random rotation limit in degrees; 0 = off [0].")] = None,
    elastic: Annotated[Optional[bool], typer.Option(help="Elastic deformation [off].")] = None,
    hflip: Annotated[Optional[bool], typer.Option(help="Random horizontal flip [on].")] = None,
    color_jitter: Annotated[Optional[bool], typer.Option(help="Colour jitter [on].")] = None,
    model_arg: Annotated[Optional[list[str]], typer.Option(help="Model argument KEY=VALUE (repeatable).")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Steps per epoch; 0 = one pass over the data [0].")] = None,
    train_split: Annotated[Optional[str], typer.Option(help="Split(s) to train on; 'train+val' joins two [train].")] = None,
    holdout_val: Annotated[Optional[bool], typer.Option(help="Hold out the validation images from --train-split even "
                                                             "where the dataset has a val split (e.g. --train-split "
                                                             "train+val: whole video sequences held out) [off].")] = None,
    holdout_groups: Annotated[Optional[str], typer.Option(help="Hold out exactly these groups of --train-split, "
                                                               "comma-separated (e.g. 0001TP: train on the other "
                                                               "video sequences, validate on that one); implies "
                                                               "--holdout-val.")] = None,
    init_from: Annotated[Optional[Path], typer.Option(help="Start from this checkpoint's weights with a fresh "
                                                         "optimizer and schedule (a second phase, e.g. larger "
                                                         "crops); keeps its hold-out.")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Data without a val split (or --holdout-val): hold out "
                                                               "this share of the training images as validation [0.1].")] = None,
    val_group: Annotated[Optional[str], typer.Option(help="How held-out images are grouped: auto (whole groups by name "
                                                          "prefix, e.g. a video sequence or patient, when the names "
                                                          "carry one), none (single images), or a regex whose first "
                                                          "group names the group [auto].")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for PyTorch [PyTorch's default].")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    classes_arg: Annotated[Optional[str], typer.Option(help="Your model: the factory's keyword for the class count "
                                                            "('' positional, '-' none) [num_classes].")] = None,
    output: OutputOpt = None,
    size_divisor: Annotated[Optional[int], typer.Option(help="Your model: height and width must divide by this "
                                                             "[probed].")] = None,
    bgr: BgrOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    input_range: RangeOpt = None,
):
    """Train a segmentation model; writes last.pt, best.pt (by val mIoU) and metrics.jsonl."""
    from edgeseg.recipes import load_recipe
    from edgeseg.train import TrainConfig, parse_size, train

    given = {
        "model": model, "data": str(data) if data else None, "epochs": epochs, "img_size": parse_size(img_size),
        "batch_size": batch_size, "loss": loss, "optimizer": optimizer.value if optimizer else None, "lr": lr,
        "weight_decay": weight_decay, "ema_decay": ema_decay, "schedule": schedule.value if schedule else None,
        "warmup_epochs": warmup_epochs, "out": str(out) if out else None, "device": device, "seed": seed,
        "workers": workers, "patience": patience, "amp": amp, "cpu_precision": cpu_precision, "sync_bn": sync_bn, "val_every": val_every,
        "scale": _parse_range(scale) if scale else None, "rotate": rotate, "elastic": elastic, "hflip": hflip,
        "color_jitter": color_jitter, "model_kwargs": _parse_kwargs(model_arg) if model_arg else None,
        "steps_per_epoch": steps_per_epoch, "val_fraction": val_fraction, "val_group": val_group,
        "train_split": train_split, "holdout_val": holdout_val,
        "holdout_groups": [g.strip() for g in holdout_groups.split(",") if g.strip()] if holdout_groups else None,
        "init_from": str(init_from) if init_from else None,
    }
    from edgeseg.models import own

    if model and own.is_own_spec(model):
        allow_model_code(model)
        given["model_kwargs"] = own_model_kwargs(given.get("model_kwargs") or {}, classes_arg, output, size_divisor,
                                                 bgr)
        given["model_input"] = model_input(mean, std, input_range)
    elif any(v is not None for v in (classes_arg, output, size_divisor, bgr, mean, std, input_range)):
        raise ConfigError("--classes-arg, --output, --size-divisor, --bgr, --mean, --std and --input-range adapt a "
                          "model of your own "
                          "(--model FILE.py:FACTORY); a registered model needs none of them")
    given = {k: v for k, v in given.items() if v is not None}
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    if resume is not None:
        cfg = TrainConfig(model="", data="", epochs=given.get("epochs", 0), out=given.get("out", ""),
                          workers=given.get("workers", 2), progress=progress)
    else:
        settings = load_recipe(recipe) if recipe else {}
        settings.update(given)
        if not settings.get("model") or not settings.get("data"):
            raise ConfigError("give --model and --data (or --recipe NAME --data DIR, or --resume LAST.pt)")
        if "out" not in given:  # the default folder: the next free runs/MODEL, runs/MODEL-2, ...
            from edgeseg.train.trainer import free_run_dir

            settings["out"] = free_run_dir(settings.get("out") or f"runs/{settings['model']}")
        cfg = TrainConfig.from_dict({**settings, "progress": progress})
    result = train(cfg, resume=resume, log=typer.echo)
    from edgeseg.train import distributed

    if distributed.is_main():
        typer.echo(f"best val mIoU {result['best_miou']:.4f} at epoch {result['best_epoch']}; "
                   f"checkpoints in {result['out']}")
        best = Path(result["out"]) / "best.pt"
        code = code_flag(result.get("model"))
        typer.echo(f"next: edgeseg eval {best} --data {cfg.data or 'DIR'}{code}\n      edgeseg build {best} "
                   f"--target openvino-cpu --data {cfg.data or 'DIR'}{code}")


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--scale '{text}' is not MIN,MAX (e.g. 0.5,2.0)") from None
    if not 0 < lo <= hi:
        raise ConfigError(f"--scale '{text}' needs 0 < MIN <= MAX")
    return lo, hi


def recipes_cmd(as_json: Annotated[bool, JsonOpt] = False):
    """List the training recipes shipped with edgeseg."""
    from edgeseg.cli.tables import emit
    from edgeseg.recipes import list_recipes, load_recipe

    records = []
    for name in list_recipes():
        r = load_recipe(name)
        records.append({"name": name, "model": r.get("model"), "description": r.get("description", "")})
    emit("training recipes", records, as_json=as_json)


class Mode(str, Enum):
    whole = "whole"
    tile = "tile"
    tta = "tta"


def _infer_opts(mode: Mode, tile: str | None, overlap: float, scales: str, flip: bool, crf: bool) -> dict:
    """Keyword arguments for edgeseg.predict.segment_image from the shared CLI options."""
    from edgeseg.train import parse_size

    opts = {"mode": mode.value, "crf": crf}
    if mode == Mode.tile:
        if tile is None:
            raise ConfigError("--mode tile needs --tile HxW (e.g. --tile 256x256)")
        opts.update(tile=parse_size(tile), overlap=overlap)
    elif mode == Mode.tta:
        try:
            opts.update(scales=tuple(float(s) for s in scales.split(",")), flip=flip)
        except ValueError:
            raise ConfigError(f"--scales '{scales}' is not a comma-separated list of numbers") from None
        if tile is not None:
            opts.update(tile=parse_size(tile), overlap=overlap)
    return opts


ModeOpt = Annotated[Mode, typer.Option(help="Inference: whole image, overlapping tiles, or test-time augmentation.")]
TileOpt = Annotated[Optional[str], typer.Option(help="Tile size HxW for --mode tile (or tta on tiles).")]
OverlapOpt = Annotated[float, typer.Option(help="Tile overlap fraction.")]
ScalesOpt = Annotated[str, typer.Option(help="TTA scales, comma-separated.")]
FlipOpt = Annotated[bool, typer.Option(help="TTA horizontal flip.")]
CrfOpt = Annotated[bool, typer.Option(help="Refine with a dense CRF (slower).")]


@takes_your_model("checkpoint", data="data")
def eval_cmd(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint file (.pt), zoo name or ONNX model (.onnx).")],
    data: Annotated[Path, typer.Option(help="Dataset folder.")],
    split: Annotated[str, typer.Option(help="Split to score.")] = "val",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 4,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    boundary_f1: Annotated[Optional[int], typer.Option(help="Also compute boundary F1 with this pixel tolerance.")] = None,
    mode: ModeOpt = Mode.whole,
    tile: TileOpt = None,
    overlap: OverlapOpt = 0.33,
    scales: ScalesOpt = "0.75,1.0,1.25",
    flip: FlipOpt = True,
    crf: CrfOpt = False,
):
    """Score a checkpoint (or an ONNX model): per-class IoU table, mIoU, pixel accuracy."""
    from rich.console import Console
    from rich.table import Table

    from edgeseg.evaluate import evaluate, write_json

    opts = _infer_opts(mode, tile, overlap, scales, flip, crf)
    if boundary_f1 is not None and (mode != Mode.whole or crf):
        raise ConfigError("--boundary-f1 works with --mode whole and no --crf")
    result = evaluate(checkpoint, data, split, batch_size=batch_size, device=device,
                      boundary_tolerance=boundary_f1, **opts)
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
    if result.get("held_out"):
        typer.echo(f"scored {result['held_out']}", err=True)
    for flag in result.get("flags") or []:
        typer.echo(f"warning: {flag}: the model has not learned these classes; train longer, or try "
                   f"--loss auto (see `edgeseg data check {data}`)", err=True)


@takes_your_model("checkpoint")
def predict_cmd(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint file (.pt), zoo name or ONNX model (.onnx).")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("predictions"),
    alpha: Annotated[float, typer.Option(help="Overlay opacity (0-1).")] = 0.5,
    mode: ModeOpt = Mode.whole,
    tile: TileOpt = None,
    overlap: OverlapOpt = 0.33,
    scales: ScalesOpt = "0.75,1.0,1.25",
    flip: FlipOpt = True,
    crf: CrfOpt = False,
):
    """Write class-index masks, colour masks and overlays for images (a checkpoint or an ONNX model)."""
    from edgeseg.predict import predict_files
    from edgeseg.checkpoints import load_model

    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha must be between 0 and 1, got {alpha}")
    model, info, _ = load_model(checkpoint)
    opts = _infer_opts(mode, tile, overlap, scales, flip, crf)
    for item in predict_files(model, info, images, out, alpha=alpha, **opts):
        top = ", ".join(f"{k} {v:.0%}" for k, v in sorted(item["classes"].items(), key=lambda kv: -kv[1])[:3])
        typer.echo(f"{item['image']} -> {item['mask']}, {Path(item['color']).name}, {Path(item['overlay']).name} "
                   f"({top})")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("recipes")(recipes_cmd)
    app.command("eval")(eval_cmd)
    app.command("predict")(predict_cmd)
