"""``edgeseg fit``: the most accurate deployment (model, input size, precision, pruning) that
meets a latency / memory budget on a target, measured on its real runtime here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.cli.own import takes_your_model


def first_onnx(arguments: dict) -> str | None:
    """The ONNX file among --models, which the ONNX facts describe."""
    found = [m.strip() for m in (arguments.get("models") or "").split(",") if m.strip().lower().endswith(".onnx")]
    return found[0] if found else None


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgeseg.fit import closest_line, table_rows

    con = Console(width=160)
    rows = table_rows(result)
    t = Table(title=f"fit: {len(rows)} candidates for {result['target']} ({result['seconds']} s)")
    for k in ("candidate", "p50 ms", "p99 ms", "peak MB", "size MB", "mIoU", "images", "status"):
        t.add_column(k, justify="left" if k in ("candidate", "status") else "right")
    for r in rows:
        t.add_row(*(str(r[k]) for k in ("candidate", "p50 ms", "p99 ms", "peak MB", "size MB", "mIoU", "images",
                                         "status")))
    con.print(t)
    c = result.get("chosen")
    if c:
        con.print(f"chosen: {c['label']}: mIoU {c['miou']:.4f} on {c['images_scored']} images, p99 "
                  f"{c['p99_ms']:.2f} ms, peak {c['memory_mb'] or 0:.0f} MB -> {result.get('artifact')}",
                  highlight=False)
    else:
        con.print("nothing meets the budget. " + closest_line(result), highlight=False, soft_wrap=True)


@takes_your_model(first_onnx, data="data")
def fit_cmd(
    target: Annotated[str, typer.Option("--target", "-t", help="Target profile (see `edgeseg targets`).")] = ...,
    data: Annotated[Path, typer.Option("--data", help="Labelled dataset: calibration (train) and mIoU (--split).")] = ...,
    budget_p99_ms: Annotated[Optional[float], typer.Option(
        "--budget-p99-ms", help="End-to-end p99 latency limit (default: the target profile's).")] = None,
    budget_memory_mb: Annotated[Optional[float], typer.Option(
        "--budget-memory-mb", help="Peak memory limit (default: the target profile's).")] = None,
    min_miou: Annotated[Optional[float], typer.Option("--min-miou", help="Lowest acceptable mIoU.")] = None,
    models: Annotated[Optional[str], typer.Option(
        "--models", help="Comma-separated zoo names, checkpoint files and ONNX models (default: the zoo's float "
                  "models).")] = None,
    sizes: Annotated[str, typer.Option("--sizes", help="Scales of the dataset's image size, rounded to each "
                                                        "model's stride.")] = "1.0,0.75,0.5",
    precisions: Annotated[Optional[str], typer.Option(
        "--precisions", help="Comma-separated (default: the target's that run here).")] = None,
    prune: Annotated[str, typer.Option("--prune", help="Structured-pruning ratios; above 0 means fine-tuning, "
                                                        "done only where the candidate can still win.")] = "0",
    prune_epochs: Annotated[float, typer.Option("--prune-epochs", help="Fine-tuning of a pruned candidate.")] = 1.0,
    time_limit: Annotated[Optional[str], typer.Option(
        "--time-limit", help="Stop measuring new candidates after this long (30m, 90s, 1h).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data scored.")] = "val",
    subset: Annotated[int, typer.Option("--subset", help="Images of the first scoring round.")] = 16,
    runs: Annotated[int, typer.Option("--runs", help="Timed runs per candidate.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up runs.")] = 5,
    memory_runs: Annotated[int, typer.Option("--memory-runs", help="Inferences in the memory-measuring "
                                                                   "process (0: skip).")] = 3,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the runtime.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder: artifact/, fit.json, fit.md, fit.html.")] = Path("fit"),
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the table and the choice.")] = False,
) -> None:
    """Search models x input sizes x precisions (x pruning) for the most accurate one within a budget."""
    import sys

    from edgeseg.fit import EXIT_NOTHING_FITS, fit

    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    result = fit(target, data, budget_p99_ms=budget_p99_ms, budget_memory_mb=budget_memory_mb, min_miou=min_miou,
                 models=models, sizes=sizes, precisions=precisions, prune=prune, time_limit=time_limit, out=out,
                 split=split, runs=runs, warmup=warmup, threads=threads, memory_runs=memory_runs, subset=subset,
                 prune_epochs=prune_epochs, force=force, say=say)
    _print(result)
    typer.echo(f"wrote {out}/fit.json, fit.md, fit.html")
    if result.get("chosen") is None:
        raise typer.Exit(EXIT_NOTHING_FITS)
    typer.echo(f"next: edgeseg bench {out}/artifact --data {data}")


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_cmd)
