"""The per-run report: every variant's params, MACs, val mIoU (and per-class change
against fp32), file size, and latency on openvino-cpu and onnxruntime-cpu, measured in
the same process one after another. Written as ``report.json`` and ``report.md``
(each atomically: temp file + rename).

Latency: batch 1 at the model's static input size, ``warmup`` runs then the median of
``runs`` synchronous calls, ``threads`` intra-op threads for both runtimes (OpenVINO
``PERFORMANCE_HINT=LATENCY``, ``INFERENCE_NUM_THREADS``; ONNX Runtime ``ORT_ENABLE_ALL``,
``intra_op_num_threads``). OpenVINO runs the model converted from PyTorch (int8 models
carry FakeQuantize nodes that the CPU plugin executes as int8); ONNX Runtime runs the
``torch.onnx.export`` file (int8 models: QuantizeLinear/DequantizeLinear pairs).
"""

from __future__ import annotations

import json
from pathlib import Path


def _measure_tflite(row: dict, name: str, qmodel, data, input_size, workdir: Path, runs, warmup, threads):
    """A PT2E (TFLite) variant: the int8 .tflite the coral build makes from it, its size,
    LiteRT CPU latency and mIoU (the deployed file's, beside the fake-quantized torch model's)."""
    from edgeseg.formats.litert.pt2e import tflite_summary, to_tflite
    from edgeseg.formats.litert.runtime import file_latency as litert_latency
    from edgeseg.compress.common import padded_items

    path = workdir / f"{name}.tflite"
    try:
        to_tflite(qmodel, path)
        row["tflite_mb"] = _size_mb([path])
        row["latency_litert_cpu"] = litert_latency(path, runs=runs, warmup=warmup, threads=threads)
        s = tflite_summary(path, padded_items(data, input_size), data.info.num_classes, data.info.ignore_index,
                           data.info.classes, threads=threads)
        row["miou_tflite"] = s["miou"]
    except Exception as exc:
        row["latency_litert_cpu"] = {"error": _err(exc)}
    why = {"error": "not measured: a TFLite (PT2E, --target edgetpu) model; see latency_litert_cpu"}
    row["latency_openvino_cpu"], row["latency_onnxruntime_cpu"] = why, dict(why)


def _size_mb(paths) -> float:
    return round(sum(Path(p).stat().st_size for p in paths) / 1e6, 3)


def _err(exc) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def measure(name: str, *, data, input_size, workdir: Path, torch_model=None, ov_model=None, summary=None,
            reference=None, params=None, macs=None, runs: int = 30, warmup: int = 5, threads: int = 1,
            extra=None) -> dict:
    """One report row. ``torch_model`` (a plain, pruned or NNCF-quantized torch model) is
    evaluated, exported to ONNX and converted to OpenVINO; an ``ov_model`` alone (accuracy-
    controlled PTQ) is evaluated and timed on OpenVINO only."""
    from edgeseg.compress.common import evaluate
    from edgeseg.formats.openvino.quantize import ov_summary, to_openvino
    from edgeseg.models.profile import count_macs, count_params

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    row: dict = {"variant": name}
    if torch_model is not None:
        torch_model.eval()
        row["params"] = params if params is not None else count_params(torch_model)
        if macs is None:
            try:
                macs = count_macs(torch_model, tuple(input_size))
            except Exception:  # pragma: no cover - quantizer hooks the counter cannot see through
                macs = None
        row["macs"] = macs
        summary = summary or evaluate(torch_model, data)
    else:
        row["params"], row["macs"] = params, macs
    from edgeseg.formats.litert.pt2e import PT2EModel

    pt2e = isinstance(torch_model, PT2EModel)
    if ov_model is None and torch_model is not None and not pt2e:
        try:
            ov_model = to_openvino(torch_model, input_size)
        except Exception as exc:
            row["openvino_error"] = _err(exc)
    if summary is None and ov_model is not None:
        summary = ov_summary(ov_model, data, input_size)
    row["miou"] = summary["miou"]
    row["per_class_iou"] = summary["per_class_iou"]
    if reference is not None:
        ref = reference["per_class_iou"]
        row["miou_change"] = (row["miou"] or 0.0) - (reference["miou"] or 0.0)
        row["per_class_change"] = {c: (None if v is None or ref.get(c) is None else v - ref[c])
                                   for c, v in row["per_class_iou"].items()}
    # sizes and latency
    if pt2e:
        _measure_tflite(row, name, torch_model, data, input_size, workdir, runs, warmup, threads)
        torch_model = None
    if ov_model is not None:
        from edgeseg.formats.openvino.quantize import latency as openvino_latency
        from edgeseg.formats.openvino.quantize import save_ir

        xml = workdir / f"{name}.xml"
        save_ir(ov_model, xml)
        row["openvino_ir_mb"] = _size_mb([xml, xml.with_suffix(".bin")])
        try:
            row["latency_openvino_cpu"] = openvino_latency(ov_model, input_size, runs=runs, warmup=warmup,
                                                           threads=threads)
        except Exception as exc:
            row["latency_openvino_cpu"] = {"error": _err(exc)}
    if torch_model is not None:
        onnx_path = workdir / f"{name}.onnx"
        try:
            from edgeseg.formats.onnx import export_any
            from edgeseg.formats.onnxruntime.runtime import file_latency as onnxruntime_latency

            export_any(torch_model, input_size, onnx_path)
            row["onnx_mb"] = _size_mb([onnx_path])
            row["latency_onnxruntime_cpu"] = onnxruntime_latency(onnx_path, input_size, runs=runs, warmup=warmup,
                                                                 threads=threads)
        except Exception as exc:
            row["latency_onnxruntime_cpu"] = {"error": _err(exc)}
    elif not pt2e:
        row["latency_onnxruntime_cpu"] = {"error": "not measured: an OpenVINO-only model (accuracy-controlled PTQ)"}
    if extra:
        row.update(extra)
    return row


def _fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def _lat(row, key):
    d = row.get(key) or {}
    return f"{d['median_ms']:.2f}" if "median_ms" in d else "n/a"


def to_markdown(report: dict) -> str:
    lines = [f"# edgeseg compress report: {report['source']}", ""]
    run = report["run"]
    lines.append(f"Data `{run['data']}` ({run['val_images']} val images), input {run['input_size'][0]}x"
                 f"{run['input_size'][1]}, latency: median of {run['runs']} runs, {run['threads']} thread(s), "
                 f"batch 1, {run['machine']}.")
    litert = any("latency_litert_cpu" in r for r in report["variants"].values())
    lines += ["", "| variant | params | MACs (G) | val mIoU | change | OV IR (MB) | ONNX (MB) | "
                  "openvino-cpu (ms) | onnxruntime-cpu (ms) |"
              + (" TFLite (MB) | TFLite val mIoU | LiteRT cpu (ms) |" if litert else ""),
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if litert else "")]
    for row in report["variants"].values():
        macs = row.get("macs")
        lines.append(f"| {row['variant']} | {row.get('params') or '-'} | "
                     f"{'-' if macs is None else f'{macs / 1e9:.3f}'} | {_fmt(row.get('miou'))} | "
                     f"{_fmt(row.get('miou_change'), '+.4f')} | {_fmt(row.get('openvino_ir_mb'), '.2f')} | "
                     f"{_fmt(row.get('onnx_mb'), '.2f')} | {_lat(row, 'latency_openvino_cpu')} | "
                     f"{_lat(row, 'latency_onnxruntime_cpu')} |"
                     + (f" {_fmt(row.get('tflite_mb'), '.2f')} | {_fmt(row.get('miou_tflite'))} | "
                        f"{_lat(row, 'latency_litert_cpu')} |" if litert else ""))
    classes = list(report["variants"].get("fp32", {}).get("per_class_iou", {}))
    others = [r for k, r in report["variants"].items() if k != "fp32" and r.get("per_class_change")]
    if classes and others:
        lines += ["", "Per-class IoU change against fp32:", "",
                  "| class | " + " | ".join(r["variant"] for r in others) + " |",
                  "|---|" + "---:|" * len(others)]
        for c in classes:
            lines.append(f"| {c} | " + " | ".join(_fmt(r["per_class_change"].get(c), "+.4f") for r in others) + " |")
    if report.get("kept_in_fp32"):
        lines += ["", "Kept in floating point:", ""]
        for k in report["kept_in_fp32"]:
            lines.append(f"- {k['variant']}: {', '.join(k['layers']) or 'nothing'} -- {k['why']}")
    for row in report["variants"].values():
        for key in ("latency_openvino_cpu", "latency_onnxruntime_cpu", "latency_litert_cpu"):
            err = (row.get(key) or {}).get("error")
            if err:
                lines.append(f"- {row['variant']} {key}: {err}")
    if report.get("goals"):
        lines += ["", "Goals:", ""]
        for g in report["goals"]:
            lines.append(f"- {g['goal']}: {g['measured']} -> {'met' if g['met'] else 'NOT met'}")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    from edgeseg.files import atomic_write_text

    out_dir = Path(out_dir)
    j, m = out_dir / "report.json", out_dir / "report.md"
    atomic_write_text(j, json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(m, to_markdown(report))
    return j, m


def goals(variants: dict) -> list[dict]:
    """The issue's goals, checked on whatever variants the run produced."""
    out = []
    fp = variants.get("fp32")
    if fp is None:
        return out
    qat = variants.get("int8_qat")
    if qat is not None:
        d = (fp["miou"] or 0) - (qat["miou"] or 0)
        out.append({"goal": "QAT int8 val mIoU within 0.010 of fp32", "measured": f"drop {d:+.4f}",
                    "met": d <= 0.010})
        if qat.get("miou_tflite") is not None:  # the deployed .tflite, not only the fake-quantized model
            d = (fp["miou"] or 0) - qat["miou_tflite"]
            out.append({"goal": "QAT int8 TFLite (LiteRT) val mIoU within 0.010 of fp32", "measured": f"drop {d:+.4f}",
                        "met": d <= 0.010})
    pq = next((v for k, v in variants.items() if k.startswith("pruned") and k.endswith("int8_qat")), None)
    if pq is not None and qat is not None:
        d = (fp["miou"] or 0) - (pq["miou"] or 0)
        a = (qat.get("latency_openvino_cpu") or {}).get("median_ms")
        b = (pq.get("latency_openvino_cpu") or {}).get("median_ms")
        speed = a / b if a and b else None
        out.append({"goal": "pruned+QAT: >= 1.5x lower openvino-cpu latency than unpruned int8",
                    "measured": "n/a" if speed is None else f"{speed:.2f}x", "met": bool(speed and speed >= 1.5)})
        out.append({"goal": "pruned+QAT: at most 0.02 val mIoU lost", "measured": f"drop {d:+.4f}",
                    "met": d <= 0.02})
    return out
