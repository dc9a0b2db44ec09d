"""``bench_artifact``: one artifact, measured in its real runtime; ``bench``: an artifact
folder or a target name (built first from ``model`` into a temporary folder)."""

from __future__ import annotations

import datetime as _dt
import tempfile
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, ModelError

SCHEMA_VERSION = 1


def model_size_mb(artifact_dir, manifest: dict) -> tuple[float, list[str]]:
    """Size (MB, 1e6 bytes) of the files the runtime loads: ``files.model`` and ``files.weights``."""
    names = [manifest["files"][k] for k in ("model", "weights") if manifest["files"].get(k)]
    paths = [Path(artifact_dir) / n for n in names]
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1e6, names


def latency_image(manifest: dict, data, split: str):
    """(encoded PNG bytes, where it came from): the first image of --data, else a synthetic one
    of the model's input size (so padding is not benchmarked as zeros)."""
    from edgeseg.bench.latency import encode_image

    if data is not None:
        from edgeseg.bench.accuracy import open_split

        ds = open_split(data, split, manifest)
        img = ds.read(0)[0]
        return encode_image(img), f"first '{split}' image of {data} ({img.shape[0]}x{img.shape[1]})"
    from edgeseg.build import synthetic_images

    h, w = manifest["input"]["size"]
    return encode_image(synthetic_images(1, (h, w))[0]), f"synthetic {h}x{w} image"


def _validate(runs, warmup, threads, memory_runs):
    if int(runs) < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    if int(warmup) < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {warmup}")
    if threads is not None and int(threads) < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if int(memory_runs) < 0:
        raise ConfigError(f"--memory-runs must be 0 or more, got {memory_runs}")


def bench_artifact(artifact, *, data=None, split: str = "val", runs: int = 100, warmup: int = 10,
                   threads: int | None = None, budget_p99_ms=None, budget_memory_mb=None, min_miou=None,
                   memory_runs: int = 5, max_images: int | None = None, async_runs: int | None = None,
                   reference: bool = True, crf: bool = False) -> dict:
    """Benchmark one artifact folder; the result dict (JSON schema ``SCHEMA_VERSION``)."""
    from edgeseg.bench.accuracy import accuracy_report
    from edgeseg.bench.budget import check_budget, resolve_budget
    from edgeseg.bench.latency import decode_image, measure_async, measure_latency
    from edgeseg.bench.memory import measure_peak_memory
    from edgeseg.formats import tool_versions as runtime_versions
    from edgeseg.machine import machine_info
    from edgeseg.formats import load_predictor, read_manifest

    artifact = Path(artifact)
    if not artifact.exists():
        raise ConfigError(f"artifact folder '{artifact}' does not exist: give a folder written by `edgeseg build` "
                          f"or a target name")
    manifest = read_manifest(artifact)
    _validate(runs, warmup, threads, memory_runs)
    if min_miou is not None and data is None:
        raise ConfigError("--min-miou needs --data (a labelled split to measure mIoU on)")
    budget = resolve_budget(manifest.get("target"), p99_ms=budget_p99_ms, memory_mb=budget_memory_mb,
                            min_miou=min_miou)
    size_mb, size_files = model_size_mb(artifact, manifest)
    encoded, image_source = latency_image(manifest, data, split)  # checks --data's classes early

    pred = load_predictor(artifact, threads=threads)
    execution = pred.execution()
    lat = measure_latency(pred, encoded, runs=int(runs), warmup=int(warmup))
    x, _ = pred.preprocess(decode_image(encoded))
    asy = measure_async(pred, x, runs=int(async_runs or runs), threads=threads)
    acc = None
    if data is not None:
        acc = accuracy_report(pred, manifest, data, split, threads=threads, max_images=max_images,
                              reference=reference, crf=crf)
    del pred
    mem = measure_peak_memory(artifact, runs=memory_runs, threads=threads) if memory_runs else None

    result = {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "artifact": str(artifact),
        "model": (manifest.get("model") or {}).get("name"),
        "target": manifest.get("target"),
        "format": manifest.get("format"),
        "runtime": manifest.get("runtime"),
        "device": manifest.get("device"),
        "precision": manifest.get("precision"),
        # what the runtime computed in, as it reports it (OpenVINO: f32 / bf16 on the CPU)
        "execution": execution,
        "input_size": manifest["input"]["size"],
        "image": image_source,
        "method": {"model_only": lat["method"], "runs": lat["runs"], "warmup": lat["warmup"],
                   "threads": threads, "end_to_end": "imdecode + preprocess + model (input/output copies) + postprocess"},
        "latency_ms": lat["latency_ms"],
        "end_to_end_ms": lat["end_to_end_ms"],
        "stages_p50_ms": lat["stages_p50_ms"],
        "throughput_fps": {"sync": lat["sync_fps"], "end_to_end": lat["end_to_end_fps"],
                           "async": asy["fps"] if asy else None,
                           "async_requests": asy["requests"] if asy else None,
                           "async_method": asy["method"] if asy else None},
        "peak_memory_mb": mem["peak_mb"] if mem else None,
        "memory": mem,
        "size_mb": size_mb,
        "size_files": size_files,
        "miou": acc["miou"] if acc else None,
        "per_class_iou": acc["per_class_iou"] if acc else None,
        "pixel_accuracy": acc["pixel_accuracy"] if acc else None,
        "accuracy": {k: v for k, v in acc.items() if k not in ("miou", "per_class_iou", "pixel_accuracy",
                                                                  "reference", "flags")} if acc else None,
        "reference": acc["reference"] if acc else None,
        "flags": acc["flags"] if acc else [],
        "classes": list(manifest.get("classes") or []),
        "parity": manifest.get("parity"),
        "machine": machine_info(threads),
        "runtime_versions": runtime_versions(),
        "samples_ms": lat["samples_ms"],
    }
    result["budget"] = check_budget(result, budget)
    return result


def resolve_source(model, target: str | None = None) -> str:
    """``model`` or the zoo default; ConfigError saying --model is needed when the zoo is empty."""
    if model:
        return str(model)
    from edgeseg.targets import default_model

    try:
        return default_model(target)
    except ModelError:
        raise ConfigError("a target name was given but no --model, and the zoo is empty: pass --model "
                          "CHECKPOINT.pt (or a zoo name) to build the target from") from None


def is_target_name(name: str) -> bool:
    from edgeseg.targets import list_targets

    return str(name) in list_targets()


def bench(artifact_or_target, *, model=None, precision: str | None = None, data=None, split: str = "val",
          report: list | None = None, build_threads: int | None = None, **kwargs) -> dict:
    """Benchmark an artifact folder, or build target ``artifact_or_target`` from ``model`` first."""
    from edgeseg.targets import list_targets

    p = Path(str(artifact_or_target))
    if p.is_dir():
        return bench_artifact(p, data=data, split=split, **kwargs)
    if not is_target_name(str(artifact_or_target)):
        raise ConfigError(f"'{artifact_or_target}' is neither an artifact folder (no such folder) nor a target "
                          f"name: give a folder written by `edgeseg build` or one of {', '.join(list_targets())}")
    from edgeseg.build import build

    source = resolve_source(model, str(artifact_or_target))
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-") as tmp:
        out = build(source, str(artifact_or_target), precision=precision, out=Path(tmp) / "artifact", data=data,
                    split=split, threads=build_threads or kwargs.get("threads"), report=report, allow_drop=True)
        r = bench_artifact(out, data=data, split=split, **kwargs)
        r["built_from"] = {"source": source, "target": str(artifact_or_target), "precision": r.get("precision"),
                           "note": "built into a temporary folder for this benchmark, then removed"}
        return r


__all__ = ["bench", "bench_artifact", "model_size_mb", "resolve_source", "SCHEMA_VERSION"]
