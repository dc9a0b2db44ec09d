"""``edgeseg zoo list`` and ``edgeseg zoo show NAME``."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeseg.cli.tables import JsonOpt

app = typer.Typer(help="Trained models shipped with edgeseg (load offline by name).", no_args_is_help=True)


@app.command("list")
def list_cmd(as_json: Annotated[bool, JsonOpt] = False):
    """Zoo models with their sequence hold-out and val mIoU, size and input."""
    from edgeseg.cli.tables import emit
    from edgeseg.zoo import default_model_name, get_card, holdout_score, list_zoo

    names = list_zoo()
    if not names:
        typer.echo("[]" if as_json else "the zoo is empty")
        return
    default = default_model_name()
    records = []
    for name in names:
        c = get_card(name)
        h, w = c["eval"]["input_size"]
        held = holdout_score(c)
        own = bool((c.get("holdout") or {}).get("groups"))  # else its score is val's
        records.append({"name": name, "default": name == default, "model": c["model"]["name"],
                        "dataset": c["dataset"]["name"],
                        "hold-out mIoU": None if held is None else round(held, 4),
                        "val mIoU": None if own else round(c["metrics"]["val_miou"], 4),
                        "params (M)": round(c["params"] / 1e6, 2), "MB": round(c["weights"]["bytes"] / 2**20, 1),
                        "eval input": f"{h}x{w}"})
    emit("edgeseg zoo", records, as_json=as_json, right=("hold-out mIoU", "val mIoU", "params (M)", "MB"))


@app.command("show")
def show_cmd(name: Annotated[str, typer.Argument(help="Zoo model name.")]):
    """Print a zoo model's card."""
    from edgeseg.zoo import ZOO_DIR, get_card

    card = get_card(name)
    typer.echo((ZOO_DIR / f"{card['name']}.md").read_text(encoding="utf-8"))
