"""Training step time on this CPU for every shipped recipe, fp32 against the bf16 path
(``edgeseg train --cpu-precision``: bf16 autocast with channels-last tensors).

    python tools/bench_train_step.py [--recipes camvid-enet-cpu,...] [--steps 6] [--threads 2] [--md FILE]

Each step is the trainer's own: forward under the same autocast, the recipe's loss, backward,
the optimizer step, on random images and labels of the recipe's crop size and batch. The
first two steps are warm-up. "correct" compares the two paths' loss on the same first batch
from the same weights (bf16 keeps 8 mantissa bits: a relative difference of a few 1e-3 is
expected) and checks every loss is finite. docs/models.md cites the table.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time

import torch

from edgeseg.losses import build_loss
from edgeseg.machine import cpu_isa, cpu_model
from edgeseg.models import create_model
from edgeseg.recipes import list_recipes, load_recipe
from edgeseg.train.trainer import TrainConfig, build_optimizer


def step_times(recipe: dict, precision: str, steps: int, seed: int = 0) -> tuple[list[float], list[float]]:
    torch.manual_seed(seed)
    model = create_model(recipe["model"], 11, **(recipe.get("model_kwargs") or {}))
    bf16 = precision == "bf16"
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    cfg = TrainConfig.from_dict({**{k: v for k, v in recipe.items() if k != "description"}, "data": "-"})
    opt = build_optimizer(model, cfg)
    loss_fn = build_loss(re.sub(r"wce(:\w+)?", "ce", recipe.get("loss", "ce")), 11, ignore_index=255)
    h, w = recipe["img_size"]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(int(recipe.get("batch_size", 8)), 3, h, w, generator=g)
    y = torch.randint(0, 11, (x.shape[0], h, w), generator=g)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    times, losses = [], []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    return times[2:], losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default=",".join(r for r in list_recipes() if r.endswith("-cpu")))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--md")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    isa = cpu_isa()
    lines = [f"CPU: {cpu_model()}, ISA {isa['isa']} (bf16: {'yes' if isa['bf16'] else 'no'}), {a.threads} threads, "
             f"torch {torch.__version__}; median of {a.steps} steps after 2 warm-up steps.", "",
             "| recipe | model | batch x crop | fp32 s/step | bf16 + channels-last s/step | speed-up | first loss fp32 / bf16 | correct |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for name in [r.strip() for r in a.recipes.split(",") if r.strip()]:
        recipe = load_recipe(name)
        t32, l32 = step_times(recipe, "fp32", a.steps)
        if isa["bf16"]:
            t16, l16 = step_times(recipe, "bf16", a.steps)
            rel = abs(l16[0] - l32[0]) / max(1e-9, abs(l32[0]))
            ok = all(map(lambda v: v == v and abs(v) != float("inf"), l16)) and rel < 0.02
            m32, m16 = statistics.median(t32), statistics.median(t16)
            row = (f"{m32:.3f} | {m16:.3f} | {m32 / m16:.2f}x | {l32[0]:.4f} / {l16[0]:.4f} | "
                   f"{'yes' if ok else 'NO'} (rel. diff {rel:.1e})")
        else:
            row = f"{statistics.median(t32):.3f} | - (no bf16 here) | - | {l32[0]:.4f} / - | -"
        h, w = recipe["img_size"]
        lines.append(f"| {name} | {recipe['model']} | {recipe.get('batch_size', 8)} x {h}x{w} | {row} |")
        print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.md:
        with open(a.md, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
