"""Benchmark the classical tools on CamVid val: the k-means clustering baseline (oracle
majority-vote mIoU, ms per image) and the dense CRF's CPU time at 360x480 with 11 classes.

With ``--checkpoint CKPT`` the model is also scored with and without CRF refinement.
Writes a Markdown section to docs/classical.md (or --out), between markers, so text
around it is kept.

    python tools/bench_crf_kmeans.py --limit 20
    python tools/bench_crf_kmeans.py --checkpoint runs/enet/best.pt
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

from edgeseg.machine import cpu_model

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "camvid"
START, END = "<!-- bench_crf_kmeans:start -->", "<!-- bench_crf_kmeans:end -->"


def _fmt(v, digits=1, scale=100.0) -> str:
    return "n/a" if v is None else f"{v * scale:.{digits}f}"


def coarse_probs(mask: np.ndarray, num_classes: int, stride: int, rng) -> np.ndarray:
    """A simulated low-resolution prediction (NOT a model): the one-hot ground truth
    (ignore -> uniform) averaged over ``stride`` x ``stride`` cells, upsampled
    bilinearly, mixed with 30% uniform and perturbed by logit noise."""
    h, w = mask.shape
    onehot = np.zeros((h, w, num_classes), np.float32)
    valid = mask < num_classes
    onehot[valid, mask[valid]] = 1.0
    onehot[~valid] = 1.0 / num_classes
    small = [cv2.resize(np.ascontiguousarray(onehot[..., c]), (w // stride, h // stride),
                        interpolation=cv2.INTER_AREA) for c in range(num_classes)]
    up = np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR) for s in small])
    logits = np.log(0.7 * up + 0.3 / num_classes) + rng.normal(0, 0.3, up.shape).astype(np.float32)
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def bench_kmeans(ds, ks, position_weight, limit, log):
    from edgeseg.classical import evaluate_kmeans

    rows = []
    for k in ks:
        for pos in (False, True):
            r = evaluate_kmeans(ds, k, use_position=pos, position_weight=position_weight, limit=limit)
            log(f"k-means k={k} position={pos}: mIoU {r['miou']:.4f} pixel acc {r['pixel_accuracy']:.4f} "
                f"{r['ms_per_image']:.0f} ms/image")
            rows.append(r)
    return rows


def bench_crf(ds, n_images, runs, backends, log):
    """Median ms per CRF call on ``n_images`` val images (360x480, 11 classes), plus
    mIoU of simulated stride-16 predictions before and after the CRF."""
    from edgeseg.classical import dense_crf
    from edgeseg.metrics import ConfusionMatrix

    info = ds.info
    out = {}
    for backend in backends:
        times = []
        before = ConfusionMatrix(info.num_classes, info.ignore_index)
        after = ConfusionMatrix(info.num_classes, info.ignore_index)
        shape = None
        for i in range(n_images):
            image, mask = ds.read(i)
            probs = coarse_probs(mask, info.num_classes, 16, np.random.default_rng(i))
            shape = probs.shape
            q = dense_crf(probs, image, backend=backend)  # warm-up and scoring
            for _ in range(runs):
                t0 = time.perf_counter()
                dense_crf(probs, image, backend=backend)
                times.append(1000.0 * (time.perf_counter() - t0))
            before.update(probs.argmax(0), mask)
            after.update(q.argmax(0), mask)
        out[backend] = {"ms_median": statistics.median(times), "ms_min": min(times), "calls": len(times),
                        "shape": shape, "sim_miou_before": before.compute()["miou"],
                        "sim_miou_after": after.compute()["miou"]}
        log(f"CRF {backend}: median {out[backend]['ms_median']:.0f} ms for {shape} "
            f"(simulated mIoU {out[backend]['sim_miou_before']:.4f} -> {out[backend]['sim_miou_after']:.4f})")
    return out


def bench_checkpoint(ds, ckpt_path, limit, log):
    import torch

    from edgeseg.classical import dense_crf
    from edgeseg.data import normalize, pad_to_multiple
    from edgeseg.data.transforms import MEAN_RGB_U8
    from edgeseg.metrics import ConfusionMatrix
    from edgeseg.checkpoints import load_model

    model, info, _ = load_model(ckpt_path)
    info.check_compatible(ds.info, f"dataset {ds.root}")
    model.eval()
    plain = ConfusionMatrix(info.num_classes, info.ignore_index)
    refined = ConfusionMatrix(info.num_classes, info.ignore_index)
    t_model, t_crf = [], []
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in range(n):
        image, mask = ds.read(i)
        h, w = mask.shape
        padded, _ = pad_to_multiple(image, model.size_divisor, value=MEAN_RGB_U8)
        x = torch.from_numpy(normalize(padded, info.mean, info.std))[None]
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = model(x)[:, :, :h, :w]
        probs = torch.softmax(logits.float(), dim=1)[0].numpy()
        t1 = time.perf_counter()
        q = dense_crf(probs, image)
        t2 = time.perf_counter()
        t_model.append(1000 * (t1 - t0))
        t_crf.append(1000 * (t2 - t1))
        plain.update(probs.argmax(0), mask)
        refined.update(q.argmax(0), mask)
    r = {"checkpoint": str(ckpt_path), "images": n,
         "plain": plain.summary(info.classes), "crf": refined.summary(info.classes),
         "ms_model": statistics.median(t_model), "ms_crf": statistics.median(t_crf)}
    log(f"model {ckpt_path}: mIoU {r['plain']['miou']:.4f} -> with CRF {r['crf']['miou']:.4f}")
    return r


def _shape(crf) -> str:
    c, h, w = next(iter(crf.values()))["shape"]
    return f"{h}x{w} (HxW)"


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def markdown(args, argv, ds, km_rows, crf, model, load_start) -> str:
    lines = [START, "## Measured: k-means baseline and dense CRF on CamVid " + ds.split, ""]
    lines.append(f"Command: `{' '.join(['python tools/bench_crf_kmeans.py'] + [shlex.quote(a) for a in argv])}`  ")
    lines.append(f"Machine: {cpu_model()}, {platform.python_implementation()} {platform.python_version()}, "
                 f"numpy {np.__version__}, OpenCV {cv2.__version__}, one process, {os.cpu_count()} logical CPUs; "
                 f"load average (1/5/15 min) {load_start} at start, {_load()} at end (other jobs share "
                 "the machine: times are inflated when the load exceeds the CPU count)  ")
    lines.append(f"Date: {datetime.date.today().isoformat()}; data: `{ds.root.name}` {ds.split}, "
                 f"{km_rows[0]['images'] if km_rows else 0} images for k-means")
    lines.append("")
    if km_rows:
        lines += ["### k-means clustering (oracle majority-vote mapping)", "",
                  "Each cluster is named with the most frequent ground-truth class of its pixels in the "
                  "same image, so these are upper bounds for the clustering, not results a model could "
                  "reach without labels. Lab colour; position weight "
                  f"{args.position_weight} when on; `ms/image` is `kmeans_segment` alone "
                  f"(fit on at most 50,000 pixels, 3 attempts).", "",
                  "| k | position | mIoU % | pixel acc % | ms/image |", "|---:|:---:|---:|---:|---:|"]
        for r in km_rows:
            lines.append(f"| {r['k']} | {'yes' if r['use_position'] else 'no'} | {_fmt(r['miou'])} | "
                         f"{_fmt(r['pixel_accuracy'])} | {r['ms_per_image']:.0f} |")
        best = max(km_rows, key=lambda r: r["miou"] or 0)
        lines += ["", f"Per-class IoU % of the best row (k={best['k']}, position "
                  f"{'on' if best['use_position'] else 'off'}): "
                  + ", ".join(f"{c} {_fmt(v)}" for c, v in best["per_class_iou"].items()), ""]
    if crf:
        from edgeseg.classical.crf import DEFAULTS as D

        lines += ["### Dense CRF (`edgeseg.classical.dense_crf`)", "",
                  f"Defaults: {D['iterations']} mean-field iterations, smoothness kernel sxy "
                  f"{D['sxy_gaussian']:g} / weight {D['compat_gaussian']:g}, appearance kernel sxy "
                  f"{D['sxy_bilateral']:g} / srgb {D['srgb']:g} / weight {D['compat_bilateral']:g}, "
                  "Potts. Time of one call on a "
                  f"{_shape(crf)} image with 11 classes, median over {args.crf_images} val images x "
                  f"{args.crf_runs} runs.", "",
                  "| backend | median ms | min ms | simulated mIoU % before -> after |",
                  "|---|---:|---:|---:|"]
        for b, r in crf.items():
            name = "numpy (built in)" if b == "numpy" else "pydensecrf2 (optional, C++)"
            lines.append(f"| {name} | {r['ms_median']:.0f} | {r['ms_min']:.0f} | "
                         f"{_fmt(r['sim_miou_before'])} -> {_fmt(r['sim_miou_after'])} |")
        moved = ", ".join(f"{'raised' if r['sim_miou_after'] > r['sim_miou_before'] else 'lowered'} it "
                          f"with {b}" for b, r in crf.items())
        lines += ["", "\"Simulated\" predictions are not a model: the ground truth averaged over 16x16 "
                  "cells, upsampled bilinearly, mixed with 30% uniform and perturbed with logit noise "
                  "(`coarse_probs` in the tool). They exercise the CRF on real CamVid images without a "
                  f"trained model; here the CRF {moved}. A model's own errors and confidence differ, so "
                  "measure its gain (and tune the kernel parameters) with `--checkpoint`.", ""]
    if model:
        lines += [f"### Model with and without CRF: `{model['checkpoint']}`", "",
                  f"{model['images']} images; model forward {model['ms_model']:.0f} ms, CRF "
                  f"{model['ms_crf']:.0f} ms per image (medians, CPU).", "",
                  "| | mIoU % | pixel acc % |", "|---|---:|---:|",
                  f"| model | {_fmt(model['plain']['miou'])} | {_fmt(model['plain']['pixel_accuracy'])} |",
                  f"| model + CRF | {_fmt(model['crf']['miou'])} | {_fmt(model['crf']['pixel_accuracy'])} |", ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.is_file() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        if not text:
            text = ("# Classical tools: k-means baseline and dense CRF\n\n"
                    "API: `edgeseg.classical` (`kmeans_segment`, `map_clusters_to_classes`, "
                    "`evaluate_kmeans`, `dense_crf`, `crf_refine_logits`). The section below is "
                    "written by `tools/bench_crf_kmeans.py`; do not edit it by hand.\n\n")
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CamVid root (default ../shared/data/camvid)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N images")
    ap.add_argument("--k", default="4,8,12", help="comma-separated cluster counts")
    ap.add_argument("--position-weight", type=float, default=0.5)
    ap.add_argument("--crf-images", type=int, default=5, help="images for CRF timing")
    ap.add_argument("--crf-runs", type=int, default=3, help="timed CRF calls per image")
    ap.add_argument("--checkpoint", type=Path, default=None, help="also score this model with/without CRF")
    ap.add_argument("--skip-kmeans", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "classical.md")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from edgeseg.data import open_dataset
    from edgeseg.errors import EdgesegError

    log = lambda s: print(s, flush=True)  # noqa: E731
    load_start = _load()
    try:
        ds = open_dataset(args.data, args.split)
        ks = [int(k) for k in args.k.split(",") if k.strip()]
        km = [] if args.skip_kmeans else bench_kmeans(ds, ks, args.position_weight, args.limit, log)
        backends = ["numpy"]
        try:
            import pydensecrf.densecrf  # noqa: F401

            backends.append("pydensecrf")
        except ImportError:
            pass
        crf = bench_crf(ds, min(args.crf_images, len(ds)), args.crf_runs, backends, log)
        model = bench_checkpoint(ds, args.checkpoint, args.limit, log) if args.checkpoint else None
    except EdgesegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    section = markdown(args, argv, ds, km, crf, model, load_start)
    if args.no_write:
        print(section)
    else:
        write_section(args.out, section)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
