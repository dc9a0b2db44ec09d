"""How list commands print: a rich table on a terminal, complete tab-separated rows when
piped (no cell cut to the terminal's width, nothing read as markup, so grep and scripts get
whole values), and JSON with ``--json``."""

from __future__ import annotations

import json
import sys

import typer


def emit(title: str, records: list[dict], *, as_json: bool = False, right: tuple = ()) -> None:
    """Print ``records`` (one dict per row, the same keys in the same order; values shown with
    ``str``, ``None`` as "-")."""
    if as_json:
        typer.echo(json.dumps(records, indent=2, default=str))
        return
    columns = list(records[0]) if records else []
    cells = [["-" if r[c] is None else str(r[c]) for c in columns] for r in records]
    if not sys.stdout.isatty():
        typer.echo("\t".join(columns))
        for row in cells:
            typer.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c in right else "left", overflow="fold")
    for row in cells:
        table.add_row(*(Text(v) for v in row))  # Text: "[tflite]" is shown, not parsed as markup
    Console().print(table)


JsonOpt = typer.Option("--json", help="Print the rows as JSON.")
