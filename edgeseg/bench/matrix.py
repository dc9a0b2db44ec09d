"""``bench --matrix``: build every target and precision runnable on this machine from one
source model, bench each, and gather one table: target | format | precision | size MB |
mIoU | change vs fp32 | p50 ms | p99 ms | FPS | peak MB | budget.

A target whose runtime is not here (TensorRT, an NPU) or a precision that cannot be built
(int8 without --data for calibration) is a row that says why, not an error."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgeseg.errors import ConfigError, EdgesegError


def plan(targets=None, precisions=None, data=None) -> list[dict]:
    """(target, precision, runnable, why) for every target/precision asked (default: all).

    ``targets`` items are names, or ``name:prec`` / ``name:prec+prec`` to pick that target's
    precisions; ``precisions`` filters all targets."""
    from edgeseg.targets import list_targets, load_target, precision_available, runtime_available

    only: dict[str, set] = {}
    names = []
    for t in (list(targets) if targets else list_targets()):  # "target" or "target:prec[+prec]"
        n, _, ps = str(t).partition(":")
        names.append(n)
        if ps:
            only[n] = {p.strip().lower() for p in ps.split("+")}
    known = list_targets()
    for n in names:
        if n not in known:
            raise ConfigError(f"unknown target '{n}' in --targets: targets: {', '.join(known)}")
    out = []
    for n in names:
        prof = load_target(n)
        ok, why = runtime_available(prof)
        for prec in prof.precisions:
            if (precisions and prec not in precisions) or (n in only and prec not in only[n]):
                continue
            row = {"target": n, "format": prof.format, "precision": prec, "runnable": ok, "why": "" if ok else why}
            if ok and prec == "int8" and data is None:
                row.update(runnable=False, why="int8 needs --data (calibration images)")
            elif ok:
                prec_ok, prec_why = precision_available(prof, prec)
                if not prec_ok:
                    row.update(runnable=False, why=prec_why)
            out.append(row)
    return out


def _fmt(v, f="{:.2f}"):
    return "–" if v is None else f.format(v)


def run_matrix(model, *, targets=None, precisions=None, data=None, split: str = "val", workdir=None,
               progress=None, **bench_kwargs) -> list[dict]:
    """Build and bench each runnable (target, precision); rows for the table (``result`` holds the full JSON)."""
    from edgeseg.bench.core import bench_artifact
    from edgeseg.build import build

    say = progress or (lambda s: None)
    rows = plan(targets, precisions, data)
    if not any(r["runnable"] for r in rows):
        raise ConfigError("nothing in the matrix can run on this machine: " +
                          "; ".join(f"{r['target']} {r['precision']}: {r['why']}" for r in rows))
    ctx = tempfile.TemporaryDirectory(prefix="edgeseg-matrix-") if workdir is None else None
    root = Path(ctx.name if ctx else workdir)
    ref_miou = None
    try:
        for row in rows:
            if not row["runnable"]:
                row.update({"budget": f"skipped: {row['why']}", "result": None})
                continue
            say(f"build {row['target']} {row['precision']}")
            try:
                out = build(model, row["target"], precision=row["precision"], out=root / f"{row['target']}-{row['precision']}",
                            data=data, split=split, allow_drop=True, force=True,
                            threads=bench_kwargs.get("threads"))
                say(f"bench {row['target']} {row['precision']}")
                r = bench_artifact(out, data=data, split=split, reference=ref_miou is None, **bench_kwargs)
            except EdgesegError as exc:
                row.update({"budget": f"error: {exc}", "result": None})
                continue
            if ref_miou is None and (r.get("reference") or {}).get("available"):
                ref_miou = r["reference"]["miou"]
            row["result"] = r
            b = r["budget"]
            row.update({
                "size MB": _fmt(r["size_mb"], "{:.2f}"),
                "mIoU": _fmt(r.get("miou"), "{:.4f}"),
                "change vs fp32": _fmt(None if r.get("miou") is None or ref_miou is None else r["miou"] - ref_miou,
                                       "{:+.4f}"),
                "p50 ms": _fmt(r["latency_ms"]["p50"]),
                "p99 ms": _fmt(r["latency_ms"]["p99"]),
                "FPS": _fmt(r["throughput_fps"]["sync"], "{:.1f}"),
                "peak MB": _fmt(r["peak_memory_mb"], "{:.0f}"),
                "budget": "pass" if b["passed"] else "FAIL: " + ", ".join(v["metric"] for v in b["violations"]),
            })
    finally:
        if ctx:
            ctx.cleanup()
    for row in rows:
        if row.get("result") is not None:
            row["result"]["matrix_reference_miou"] = ref_miou
    return rows


__all__ = ["plan", "run_matrix"]
