"""CamVid val table for issue 8: each model with and without test-time augmentation and
dense-CRF refinement (mIoU and ms per image), beside the k-means baseline.

    python tools/bench_inference_modes.py bisenetv1-camvid --data ../shared/data/camvid --limit 101

Writes docs/inference_modes.md. Models are zoo names or checkpoint paths. The k-means
row is read from docs/classical.md's measurement (tools/bench_crf_kmeans.py) when present.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from edgeseg.data import open_dataset
from edgeseg.metrics import ConfusionMatrix
from edgeseg.predict import segment_image
from edgeseg.checkpoints import load_model
from edgeseg.files import atomic_write_text
from edgeseg.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
VARIANTS = [("whole", False), ("whole", True), ("tta", False), ("tta", True)]


def score(model, info, dataset, n, mode, crf):
    cm = ConfusionMatrix(info.num_classes, info.ignore_index)
    seconds = 0.0
    opts = {"scales": (0.75, 1.0, 1.25), "flip": True} if mode == "tta" else {}
    for i in range(n):
        image, mask = dataset.read(i)
        t0 = time.perf_counter()
        pred, _ = segment_image(model, info, image, mode=mode, crf=crf, **opts)
        seconds += time.perf_counter() - t0
        cm.update(pred, mask)
    return cm.summary(info.classes)["miou"], 1000 * seconds / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    parser.add_argument("--limit", type=int, default=None, help="score the first N val images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kmeans", type=int, default=12, help="k of the k-means baseline row (0: skip)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "inference_modes.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data, "val")
    n = min(len(dataset), args.limit or len(dataset))
    load_before = os.getloadavg()[0]
    rows = []
    if args.kmeans:
        from edgeseg.classical import evaluate_kmeans

        km = evaluate_kmeans(dataset, args.kmeans, use_position=True, limit=n)
        rows.append(f"| k-means baseline (k={args.kmeans}, colour + position; clusters named by majority vote "
                    f"with each image's ground truth: an oracle upper bound) | - | no | {km['miou']:.4f} | "
                    f"{km['ms_per_image']:.0f} |")
        print(rows[-1], flush=True)
    for source in args.models:
        model, info, _ = load_model(source)
        for mode, crf in VARIANTS:
            miou, ms = score(model, info, dataset, n, mode, crf)
            label = {"whole": "whole image", "tta": "TTA (scales 0.75/1/1.25 + flip)"}[mode]
            rows.append(f"| `{source}` | {label} | {'yes' if crf else 'no'} | {miou:.4f} | {ms:.0f} |")
            print(rows[-1], flush=True)
    cmd = "python tools/bench_inference_modes.py " + " ".join(args.models) + (f" --limit {args.limit}" if args.limit else "")
    text = "\n".join([
        "# Inference modes on CamVid val",
        "",
        f"Each model whole-image, with test-time augmentation, and with the dense CRF (`edgeseg.classical.dense_crf`, "
        f"numpy mean-field, 5 iterations); {n} val images at their 360x480 size, padded to the stride, padding ignored. "
        f"ms per image is the whole inference (PyTorch eager, {args.threads} threads) plus CRF.",
        "",
        f"- Command: `{cmd}`",
        f"- CPU: {cpu_model()}; torch {torch.__version__}; load average (1 min) before / after: "
        f"{load_before:.2f} / {os.getloadavg()[0]:.2f}",
        "",
        "| model | inference | CRF | mIoU | ms / image |",
        "|---|---|---|---:|---:|",
        *rows,
        "",
        "The k-means colour-clustering baseline (oracle majority-vote mIoU) is in [classical.md](classical.md).",
        "",
    ])
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
