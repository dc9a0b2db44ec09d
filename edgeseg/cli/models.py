"""``edgeseg models``: the registry with parameters and MACs."""

from __future__ import annotations

import re
from typing import Annotated

import typer


def models_cmd(
    pattern: Annotated[str, typer.Argument(help="Glob on model names, e.g. '*net*'.")] = "*",
    num_classes: Annotated[int, typer.Option(help="Classes for the head.")] = 11,
    img_size: Annotated[str, typer.Option(help="Input HxW for the MAC count (rounded up to each model's stride).")] = "360x480",
):
    """List registered models with params, MACs at an input size, and the paper."""
    from rich.console import Console
    from rich.table import Table

    from edgeseg.models import count_macs, count_params, create_model, get_entry, list_models
    from edgeseg.train import parse_size

    h, w = parse_size(img_size)
    names = list_models(pattern)
    if not names:
        typer.echo(f"no model matches '{pattern}'; all models: {', '.join(list_models())}", err=True)
        raise typer.Exit(1)
    table = Table(title=f"models ({num_classes} classes, MACs at {h}x{w} rounded up to the stride)")
    for col in ("name", "params (M)", "GMACs", "input", "stride", "paper"):
        table.add_column(col, justify="right" if col in ("params (M)", "GMACs") else "left")
    for name in names:
        model = create_model(name, num_classes)
        size = (model.valid_size(h), model.valid_size(w))
        table.add_row(name, f"{count_params(model) / 1e6:.2f}", f"{count_macs(model, size) / 1e9:.2f}",
                      f"{size[0]}x{size[1]}", str(model.size_divisor), _paper_link(get_entry(name).paper))
    Console().print(table)


def _paper_link(paper: str) -> str:
    """The arXiv link of a citation (the full citation is in each model's file)."""
    match = re.search(r"https?://\S+", paper)
    return match.group(0).rstrip(").,") if match else paper


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
