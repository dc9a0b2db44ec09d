"""``edgeseg data``: list, download and check datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from edgeseg.cli.tables import JsonOpt

app = typer.Typer(
    help="Datasets: list the catalog, download one, check a dataset folder.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(exc) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(getattr(exc, "exit_code", 2))


@app.command("list")
def list_cmd(as_json: Annotated[bool, JsonOpt] = False):
    """Show the datasets `edgeseg data download` knows."""
    from edgeseg.cli.tables import emit
    from edgeseg.data.download import CATALOG

    records = [{"name": e.name, "dataset": e.title, "size": e.size, "format": e.format,
                "checksum": e.checksum or "none: not verified (give --sha256 or --md5)",
                "access": "direct download" if e.direct else f"login: {e.login_url}"} for e in CATALOG.values()]
    emit("edgeseg dataset catalog", records, as_json=as_json)


@app.command("download")
def download_cmd(
    name: str = typer.Argument(..., help="catalog name (see `edgeseg data list`), or any name with --url"),
    to: Path = typer.Option(..., "--to", help="folder to create for the dataset (must be absent or empty)"),
    url: Optional[str] = typer.Option(None, "--url", help="download this archive instead of the catalog's"),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="expected SHA-256 of the archive"),
    md5: Optional[str] = typer.Option(None, "--md5", help="expected MD5 of the archive"),
    keep_archive: bool = typer.Option(False, "--keep-archive", help="keep the downloaded archive"),
    timeout: float = typer.Option(60.0, "--timeout", help="network timeout in seconds"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Download a dataset archive, verify it and extract it into --to."""
    from edgeseg.data.download import download_dataset
    from edgeseg.errors import EdgesegError

    checksum = f"sha256:{sha256}" if sha256 else (f"md5:{md5}" if md5 else None)
    try:
        dest = download_dataset(name, to, url=url, checksum=checksum, keep_archive=keep_archive,
                                timeout=timeout, progress=not quiet)
    except EdgesegError as exc:
        _fail(exc)
    typer.echo(f"{name} is in {dest}")


def _group_sizes(ds) -> dict[str, int]:
    from edgeseg.data.holdout import group_of

    sizes: dict[str, int] = {}
    for i in range(len(ds)):
        g = group_of(ds.image_id(i))
        sizes[g] = sizes.get(g, 0) + 1
    return sizes


def _warn_shared_groups(train_ds, val_ds, train_split: str) -> None:
    """Val frames from a group (video sequence, patient) that training also draws from have
    near-copies in training, so val flatters: say so, and how to hold out whole groups."""
    if val_ds is None:
        return
    train_g, val_g = _group_sizes(train_ds), _group_sizes(val_ds)
    shared = sorted(g for g in val_g if g is not None and g in train_g)
    if not shared or None in train_g or None in val_g:
        return
    both = {g: train_g.get(g, 0) + val_g.get(g, 0) for g in set(train_g) | set(val_g)}
    listed = ", ".join(f"{g} ({both[g]})" for g in sorted(both))
    counts = ", ".join(f"{g}: {val_g[g]} val / {train_g[g]} {train_split} images" for g in shared[:3])
    typer.echo(f"note: val shares name groups with '{train_split}' ({counts}), so its score flatters the model; "
               f"to score unseen groups, train with --train-split {train_split}+val --holdout-groups GROUP "
               f"(groups: {listed})")


def _print_split_plan(splits: list[str], train_ds, train_split: str, val_ds=None) -> set[str]:
    """Say which splits `edgeseg train` would train and validate on; returns the ids it would hold out."""
    from edgeseg.data.holdout import describe_holdout, make_holdout
    from edgeseg.errors import EdgesegError

    if "val" in splits:
        typer.echo(f"edgeseg train would train on '{train_split}' and validate on 'val'")
        _warn_shared_groups(train_ds, val_ds, train_split)
        return set()
    ids = [train_ds.image_id(i) for i in range(len(train_ds))]
    try:
        h = make_holdout(ids, from_split=train_split)
    except EdgesegError as exc:
        typer.echo(f"edgeseg train cannot make a validation split: {exc}")
        return set()
    typer.echo(f"no 'val' split: edgeseg train would hold out {describe_holdout(h, len(ids)).replace(' held out as', ' as')} "
               f"(--val-fraction, --val-group and --seed change it)")
    return set(h["val"])


def _print_balance(console, split: str, ds, per_image: list, after_holdout: bool) -> None:
    """Class balance of the images training would use, and the loss `edgeseg train --loss auto` would take."""
    import numpy as np
    from rich.table import Table

    from edgeseg.losses import RARE_SHARE, suggest_loss

    nc = ds.info.num_classes
    pixels = np.sum(per_image, axis=0) if per_image else np.zeros(nc, np.int64)
    images = np.sum([v > 0 for v in per_image], axis=0) if per_image else np.zeros(nc, np.int64)
    total = int(pixels.sum())
    which = "training images (after the hold-out)" if after_holdout else "images"
    typer.echo(f"class balance of '{split}': {len(per_image)} {which}, {total:,} labelled pixels")
    table = Table()
    for col in ("class", "pixels", "share", "images with it", "note"):
        table.add_column(col, justify="left" if col in ("class", "note") else "right")
    for k, name in enumerate(ds.info.classes):
        share = pixels[k] / total if total else 0.0
        note = "absent" if pixels[k] == 0 else ("rare" if share < RARE_SHARE else "")
        table.add_row(str(name), f"{int(pixels[k]):,}", f"{share:.2%}", f"{int(images[k])}", note)
    console.print(table)
    spec, why = suggest_loss(pixels, ds.info.classes)
    typer.echo(f"suggested loss: {spec} ({why}); `edgeseg train --loss auto` uses it")


@app.command("check")
def check_cmd(
    root: Path = typer.Argument(..., help="dataset folder"),
    fmt: str = typer.Option("auto", "--format", help="auto, camvid, cityscapes, voc or folder"),
    split: Optional[List[str]] = typer.Option(None, "--split", help="split(s) to check (default: all found)"),
    limit: int = typer.Option(0, "--limit", help="check only the first N images of each split (0 = all)"),
    show: int = typer.Option(20, "--show", help="how many problems to print"),
):
    """Open every split, read every image and mask, and report sizes, classes and problems."""
    import numpy as np
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from edgeseg.data.datasets import available_splits, detect_format, open_dataset
    from edgeseg.errors import DataError, EdgesegError

    console = Console()
    try:
        fmt = detect_format(root) if fmt == "auto" else fmt
        splits = list(split) if split else available_splits(root, fmt)
        if not splits:
            raise DataError(f"found no splits in {root} ({fmt} layout): check the folder")
    except EdgesegError as exc:
        _fail(exc)

    problems: list[str] = []
    balance: dict[str, tuple] = {}  # split -> (dataset, {image id: pixels per class})
    table = Table(title=f"{root} ({fmt})")
    for col in ("split", "images", "sizes (HxW)", "classes present", "ignore px", "problems"):
        table.add_column(col)
    for s in splits:
        try:
            ds = open_dataset(root, s, fmt=fmt)
        except DataError as exc:
            problems.append(f"[{s}] {exc}")
            table.add_row(s, "-", "-", "-", "-", "cannot open")
            continue
        n = len(ds) if limit <= 0 else min(limit, len(ds))
        counts = np.zeros(256, dtype=np.int64)
        per_image: dict[str, np.ndarray] = {}
        sizes: dict[tuple[int, int], int] = {}
        bad = 0
        with Progress(console=Console(stderr=True), transient=True) as prog:
            task = prog.add_task(f"checking {s}", total=n)
            for i in range(n):
                try:
                    image, mask = ds.read(i)
                except DataError as exc:
                    bad += 1
                    problems.append(f"[{s}] {exc}")
                else:
                    sizes[image.shape[:2]] = sizes.get(image.shape[:2], 0) + 1
                    h = np.bincount(mask.ravel(), minlength=256)
                    counts += h
                    per_image[ds.image_id(i)] = h[: ds.info.num_classes]
                prog.advance(task)
        balance[s] = (ds, per_image)
        present = [ds.info.classes[c] for c in np.flatnonzero(counts[: ds.info.num_classes])]
        size_txt = ", ".join(f"{h}x{w}" + (f" ({k})" if len(sizes) > 1 else "")
                             for (h, w), k in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
        if len(sizes) > 3:
            size_txt += f", ... ({len(sizes)} sizes)"
        total = counts.sum()
        ign = f"{100.0 * counts[255] / total:.1f}%" if total else "-"
        table.add_row(s, str(n) + ("" if n == len(ds) else f" of {len(ds)}"), size_txt or "-",
                      f"{len(present)}/{ds.info.num_classes}: " + ", ".join(present), ign, str(bad))
    console.print(table)
    train_split = "train" if "train" in balance else next(iter(balance), None)
    if train_split is not None:
        ds, per_image = balance[train_split]
        held = _print_split_plan(splits, ds, train_split, (balance.get("val") or (None,))[0])
        _print_balance(console, train_split, ds, [v for k, v in per_image.items() if k not in held], bool(held))
    if problems:
        for p in problems[:show]:
            typer.echo(f"problem: {p}", err=True)
        if len(problems) > show:
            typer.echo(f"... and {len(problems) - show} more problems", err=True)
        raise typer.Exit(1)
    typer.echo("no problems found")
