"""Benchmark every registered model: parameters, MACs and PyTorch CPU eager latency.

Writes a Markdown table to docs/models.md (or --out). Input is 1x3x384x480: CamVid's
360x480 frames padded to 384 rows, since 360 is not a multiple of 32.

    python tools/bench_models.py --runs 20
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from edgeseg.machine import cpu_model

import torch

from edgeseg.models import count_macs, count_params, create_model, get_entry, list_models

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 11  # CamVid
NOTES = (
    "Input sizes: every model checks its input (`SegmentationModel.check_input_size`) and names the "
    "nearest valid size. Divisors: ENet 8, BiSeNet V1/V2 and FCN 32, U-Net 16, DeepLabv3+ = its "
    "output stride (16 by default, 8 with `output_stride=8`; MobileNetV2's last stride-2 stage is "
    "dilated instead), Segmenter = its patch size (16 by default, 8 with `patch_size=8`). "
    "`unet_valid` also needs at least 96 px (it mirror-pads 94 px per side).",
    "`enet` upsamples bilinearly in the decoder (no MaxUnpool, which makes OpenVINO about 4x slower); "
    "`enet_unpool` is the paper's decoder with max-pool indices (exported to ONNX as ScatterElements, "
    "since the TorchScript exporter has no MaxUnpool symbolic).",
    "\"params\" counts every parameter, \"params (inference)\" leaves out the auxiliary heads that "
    "only training uses (BiSeNet); MACs are for the inference graph.",
    "`bisenetv2` uses the reference 1024-channel segmentation head (`head_channels=`); its four "
    "auxiliary heads run only in training mode. `bisenetv1` uses a small ResNet-10-style context path "
    "trained from scratch, not the paper's pretrained ResNet-18.",
    "FCNs use a small VGG-like backbone (widths 32-64-128-256-256, BN), not VGG-16.",
    "`unet` / `unet_valid` use `base_channels=32` (the paper: 64); `unet_valid` computes on the "
    "mirror-padded tile, hence more MACs for the same input.",
    "`segmenter` is a ViT-Tiny-width encoder (dim 192, 3 heads, MLP ratio 4) with 6 blocks instead of 12, "
    "patch 16, and the paper's mask transformer decoder (2 blocks, class embeddings as tokens), trained "
    "from scratch (the paper fine-tunes ImageNet-pretrained ViTs); `decoder=\"linear\"` is the paper's "
    "linear baseline. Position embeddings are learned for a 24x30 grid (384x480) and bilinearly resized "
    "to the input's patch grid, so any multiple of 16 works (also in the exported ONNX graph). "
    "Attention cost grows with the square of the token count (H*W/256).",
    "Decoder upsampling (`upsample=`; the table uses each model's default): `enet` bilinear (default), "
    "nearest, deconv, unpool (= `enet_unpool`); `fcn8s/16s/32s` deconv (default, bilinear-initialised and "
    "learned, the paper's), bilinear, nearest; `unet` / `unet_valid` deconv (default, the paper's "
    "up-convolution), bilinear, nearest (resize + 1x1 conv).",
    "Papers: each module's docstring in `edgeseg/models/` and `edgeseg.models.get_entry(name).paper`.",
)


@torch.no_grad()
def latency_ms(model, x, runs: int, warmup: int) -> tuple[float, float, float]:
    """Median, 90th-percentile and minimum wall time (ms) of ``runs`` forwards after
    ``warmup`` ones."""
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return statistics.median(times), p90, times[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per model (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--passes", type=int, default=1,
                    help="time every model this many times, keep each model's least-disturbed pass")
    ap.add_argument("--models", default="*", help="glob over registered names (default all)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "models.md")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_before = _loadavg()
    torch.manual_seed(0)
    size = (args.height, args.width)
    x = torch.randn(1, 3, *size)
    models = {}
    infer_params = {}  # without training-only auxiliary heads
    for name in list_models(args.models):
        model = create_model(name, NUM_CLASSES).eval()
        model.check_input_size(*size)
        models[name] = (model, count_params(model), count_macs(model, size))
        aux = getattr(model, "aux_heads", None)
        infer_params[name] = count_params(model) - (count_params(aux) if aux is not None else 0)
    # Each pass times every model in turn; a model's reported numbers come from its pass
    # with the lowest p90, i.e. the one least disturbed by other processes (a shared
    # 2-core machine: one busy neighbour doubles the times).
    best: dict[str, tuple[float, float, float]] = {}
    for i in range(args.passes):
        for name, (model, params, macs) in models.items():
            med, p90, fastest = latency_ms(model, x, args.runs, args.warmup)
            if name not in best or p90 < best[name][1]:
                best[name] = (med, p90, fastest)
            print(f"pass {i + 1}: {name:28s} {params / 1e6:7.2f}M {macs / 1e9:7.2f}G "
                  f"{med:8.1f} ms (p90 {p90:.1f}, min {fastest:.1f})", flush=True)
    rows = [(name, params, infer_params[name], macs, *best[name], get_entry(name).description)
            for name, (model, params, macs) in models.items()]

    cmd = "python tools/bench_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Models",
        "",
        "Every registered model, built with `num_classes=11` (CamVid), random weights.",
        f"Input 1x3x{size[0]}x{size[1]}"
        + (": CamVid's 360x480 padded to 384 rows (360 is not a multiple of 32)." if size == (384, 480) else "."),
        "MACs are counted by `edgeseg.models.count_macs` (PyTorch's FLOP counter / 2, convs and matmuls).",
        f"Latency: PyTorch eager fp32 on CPU, `torch.no_grad()`, {args.warmup} warm-up run(s), then median and "
        f"90th percentile over {args.runs} runs"
        + (f"; per model, the pass with the lowest p90 of {args.passes} passes (the least disturbed)." if args.passes > 1 else "."),
        "",
        f"- Command: `{cmd.strip()}`",
        f"- CPU: {cpu_model()} ({torch.get_num_threads()} torch threads, {_ncpu()} logical CPUs visible)",
        f"- Load average (1 min) before / after: {load_before} / {_loadavg()} "
        "(other processes on the machine skew latency; re-run when it is idle)",
        f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.machine()}",
        "",
        "| model | params | params (inference) | MACs | latency median (ms) | p90 (ms) | min (ms) | description |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, params, iparams, macs, med, p90, fastest, desc in rows:
        lines.append(f"| `{name}` | {params / 1e6:.2f}M | {iparams / 1e6:.2f}M | {macs / 1e9:.2f}G | {med:.1f} | {p90:.1f} | "
                     f"{fastest:.1f} | {desc} |")
    lines += ["", "Notes:", ""] + [f"- {n}" for n in NOTES] + [""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


def _ncpu() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


if __name__ == "__main__":
    raise SystemExit(main())
