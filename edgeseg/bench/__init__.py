"""``edgeseg bench``: measure an artifact in its real runtime and gate it on a budget.

* :func:`bench` / :func:`bench_artifact` -- latency (model only and end to end: p50, p90,
  p99, mean, min, max), throughput (sync; parallel requests where the runtime has them),
  peak resident memory of a fresh plain-runtime process (as deployed), file size, and with a labelled split mIoU,
  per-class IoU, pixel accuracy against the fp32 PyTorch source, degenerate-output flags,
  the machine and runtime versions, and the budget verdict. Returns a JSON-able dict
  (``schema_version`` :data:`SCHEMA_VERSION`).
* :func:`run_matrix` -- every target and precision runnable here, one row each.
* :mod:`edgeseg.bench.report` -- JSON, Markdown and a self-contained HTML page (inline SVG).
"""

_EXPORTS = {
    "bench": "core", "bench_artifact": "core", "model_size_mb": "core", "SCHEMA_VERSION": "core",
    "run_matrix": "matrix", "plan": "matrix",
    "measure_latency": "latency", "measure_async": "latency", "stats": "latency",
    "measure_peak_memory": "memory",
    "resolve_budget": "budget", "check_budget": "budget", "Budget": "budget", "EXIT_BUDGET": "budget",
    "to_json": "report", "to_markdown": "report", "to_html": "report", "write_reports": "report",
}


def __getattr__(name):
    # lazy: ``python -m edgeseg.bench.memory`` must not import the rest (nor count it as baseline)
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"edgeseg.bench.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'edgeseg.bench' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
