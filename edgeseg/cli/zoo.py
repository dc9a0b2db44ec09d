"""``edgeseg zoo list`` and ``edgeseg zoo show NAME``."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Trained models shipped with edgeseg (load offline by name).", no_args_is_help=True)


@app.command("list")
def list_cmd():
    """Zoo models with their val mIoU, size and input."""
    from rich.console import Console
    from rich.table import Table

    from edgeseg.zoo import default_model_name, get_card, list_zoo

    names = list_zoo()
    if not names:
        typer.echo("the zoo is empty")
        return
    default = default_model_name()
    table = Table(title="edgeseg zoo")
    for col in ("name", "model", "dataset", "val mIoU", "params (M)", "MB", "eval input"):
        table.add_column(col, no_wrap=col in ("name", "model"))
    for name in names:
        c = get_card(name)
        h, w = c["eval"]["input_size"]
        table.add_row(name + (" (default)" if name == default else ""), c["model"]["name"], c["dataset"]["name"],
                      f"{c['metrics']['val_miou']:.4f}", f"{c['params'] / 1e6:.2f}",
                      f"{c['weights']['bytes'] / 2**20:.1f}", f"{h}x{w}")
    Console().print(table)


@app.command("show")
def show_cmd(name: Annotated[str, typer.Argument(help="Zoo model name.")]):
    """Print a zoo model's card."""
    from edgeseg.zoo import ZOO_DIR, get_card

    card = get_card(name)
    typer.echo((ZOO_DIR / f"{card['name']}.md").read_text(encoding="utf-8"))
