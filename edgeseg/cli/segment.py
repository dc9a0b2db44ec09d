"""``edgeseg segment``: classical (non-learned) segmentation, today the k-means baseline."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Method(str, Enum):
    kmeans = "kmeans"


def segment_cmd(
    images: Annotated[Optional[list[Path]], typer.Argument(help="Images to segment.")] = None,
    method: Annotated[Method, typer.Option(help="Segmentation method.")] = Method.kmeans,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of clusters.")] = 8,
    position: Annotated[bool, typer.Option(help="Cluster on colour + position instead of colour alone.")] = False,
    position_weight: Annotated[float, typer.Option(help="Weight of the position features.")] = 0.5,
    out: Annotated[Path, typer.Option(help="Output folder for cluster maps.")] = Path("segments"),
    data: Annotated[Optional[Path], typer.Option(help="Score on this dataset instead (clusters named by majority vote).")] = None,
    split: Annotated[str, typer.Option(help="Split for --data.")] = "val",
    limit: Annotated[Optional[int], typer.Option(help="Score only the first N images of --data.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write --data scores as JSON.")] = None,
):
    """Segment images by k-means clustering, or score the baseline on a dataset with --data.

    Scores map each cluster to the majority ground-truth class of its pixels in the same
    image: an oracle upper bound for the clustering, the usual protocol for unsupervised
    segmentation, so compare it with learned models knowing that.
    """
    import cv2
    import numpy as np

    from edgeseg.classical import evaluate_kmeans, kmeans_segment
    from edgeseg.errors import ConfigError
    from edgeseg.predict import read_rgb, write_png

    if data is not None:
        from edgeseg.data import open_dataset
        from edgeseg.evaluate import write_json

        dataset = open_dataset(data, split)
        result = evaluate_kmeans(dataset, k, use_position=position, position_weight=position_weight, limit=limit)
        typer.echo(f"k-means (k={k}{', +position' if position else ''}) on {data}/{split}, {result['images']} images: "
                   f"mIoU {result['miou']:.4f} (majority-vote oracle), pixel accuracy "
                   f"{result['pixel_accuracy']:.4f}, {result['ms_per_image']:.0f} ms/image")
        if json_out:
            write_json(result, json_out)
        return
    if not images:
        raise ConfigError("give image files to segment, or --data DIR to score the baseline")
    decoded = [read_rgb(p) for p in images]
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(max(k, 1), 3), dtype=np.uint8)
    for path, rgb in zip(images, decoded):
        clusters = kmeans_segment(rgb, k, use_position=position, position_weight=position_weight)
        write_png(out / f"{path.stem}_clusters.png", clusters.astype(np.uint8))
        write_png(out / f"{path.stem}_clusters_color.png", cv2.cvtColor(colours[clusters], cv2.COLOR_RGB2BGR))
        typer.echo(f"{path} -> {out / (path.stem + '_clusters.png')} ({len(np.unique(clusters))} clusters)")


def register(app: typer.Typer) -> None:
    app.command("segment")(segment_cmd)
