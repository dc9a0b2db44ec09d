"""``edgeseg models``: the registry with parameters and MACs."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from edgeseg.cli.tables import JsonOpt


def models_cmd(
    pattern: Annotated[str, typer.Argument(help="Glob on model names, e.g. '*net*'.")] = "*",
    num_classes: Annotated[int, typer.Option(help="Classes for the head.")] = 11,
    img_size: Annotated[str, typer.Option(help="Input HxW for the MAC count (rounded up to each model's stride).")] = "360x480",
    as_json: Annotated[bool, JsonOpt] = False,
):
    """List registered models with params, MACs at an input size, and the paper."""
    from edgeseg.cli.tables import emit
    from edgeseg.models import count_macs, count_params, create_model, get_entry, list_models
    from edgeseg.train import parse_size

    h, w = parse_size(img_size)
    names = list_models(pattern)
    if not names:
        typer.echo(f"no model matches '{pattern}'; all models: {', '.join(list_models())}", err=True)
        raise typer.Exit(1)
    records = []
    from edgeseg.progress import track

    for name in track(names, "measuring models"):
        model = create_model(name, num_classes)
        size = (model.valid_size(h), model.valid_size(w))
        records.append({"name": name, "params (M)": round(count_params(model) / 1e6, 2),
                        "GMACs": round(count_macs(model, size) / 1e9, 2), "input": f"{size[0]}x{size[1]}",
                        "stride": model.size_divisor, "paper": _paper_link(get_entry(name).paper)})
    emit(f"models ({num_classes} classes, MACs at {h}x{w} rounded up to the stride)", records, as_json=as_json,
         right=("params (M)", "GMACs"))


def _paper_link(paper: str) -> str:
    """The arXiv link of a citation (the full citation is in each model's file)."""
    match = re.search(r"https?://\S+", paper)
    return match.group(0).rstrip(").,") if match else paper


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
