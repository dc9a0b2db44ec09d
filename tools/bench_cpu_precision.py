"""Time one OpenVINO IR on the CPU under each INFERENCE_PRECISION_HINT (and the plugin's default).

    python tools/bench_cpu_precision.py ARTIFACT_DIR [--rounds 3 --runs 30 --threads 2]

Prints, per hint, what the compiled model reports it computes in and the median model-only
latency of each round (rounds interleave the hints, so a load change hits them alike).
docs/targets.md cites it for the cost of f32 versus bf16 in the float ops of an int8 IR.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import openvino as ov

from edgeseg.machine import cpu_isa, cpu_model
from edgeseg.formats.openvino.runtime import compiled_precision

HINTS = (None, "f32", "bf16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    manifest = json.loads((args.artifact / "manifest.json").read_text())
    core = ov.Core()
    model = core.read_model(str(args.artifact / manifest["files"]["model"]))
    x = np.random.default_rng(0).standard_normal(tuple(model.inputs[0].shape)).astype(np.float32)
    medians: dict = {}
    ran: dict = {}
    for _ in range(args.rounds):
        for hint in HINTS:
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads}
            if hint:
                config["INFERENCE_PRECISION_HINT"] = hint
            compiled = core.compile_model(model, "CPU", config)
            ran[hint] = compiled_precision(compiled)
            request = compiled.create_infer_request()
            for _ in range(5):
                request.infer({0: x})
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                request.infer({0: x})
                times.append((time.perf_counter() - t0) * 1e3)
            medians.setdefault(hint, []).append(round(float(np.median(times)), 2))
    print(f"{args.artifact} ({manifest.get('precision')}), {cpu_model()}, ISA {cpu_isa()['isa']}, "
          f"{args.threads} threads")
    for hint in HINTS:
        print(f"  hint {hint or '(default)':<9} computes in {ran[hint]:<5} median ms per round {medians[hint]}")


if __name__ == "__main__":
    main()
