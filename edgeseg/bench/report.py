"""Reports of bench results: JSON (schema-versioned), Markdown, and one self-contained HTML
page whose plots are inline SVG written here (no plotting dependency, no network):
accuracy against latency with the budget region shaded, per-class IoU of the fp32 source
against the deployed model, and the latency histogram."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from edgeseg.train.checkpoint import atomic_write_text

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _f(v, fmt="{:.2f}", none="–"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return fmt.format(v)


def _label(r: dict) -> str:
    return r["label"] if "label" in r else f"{r.get('target')} {r.get('precision')}"


def _format_on_runtime(r: dict) -> str:
    """"onnx on onnxruntime", but "openvino" once where the format and the runtime share a name."""
    fmt, rt = str(r.get("format")), str(r.get("runtime"))
    return fmt if fmt == rt else f"{fmt} on {rt}"


def execution_line(r: dict) -> str:
    """Where and in which precision the model really ran, and the CPU's ISA: "CPU, computed in
    f32; CPU ISA AMX" (OpenVINO reports its inference precision; other runtimes do not)."""
    ex = r.get("execution") or {}
    ran = str(ex.get("device") or r.get("device") or "?")
    if ex.get("inference_precision"):
        ran += f", computed in {ex['inference_precision']}"
    isa = (r.get("machine") or {}).get("isa")
    return ran + (f"; CPU ISA {isa}" if isa else "")


def timing_note(r: dict) -> str | None:
    """One line where end to end came out faster than model only. End to end includes the model
    call, so on a steady machine it cannot; the two loops run one after the other
    (edgeseg/bench/latency.py), and a change of load between them shows up like this."""
    a, b = (r.get("latency_ms") or {}).get("p50"), (r.get("end_to_end_ms") or {}).get("p50")
    if a is None or b is None or b >= a:
        return None
    m = r.get("machine") or {}
    load = f", load average {m['load_average']}" if m.get("load_average") else ""
    return (f"end-to-end p50 {b:.1f} ms is below model-only p50 {a:.1f} ms, which a steady machine cannot give: "
            f"the two are timed in separate runs one after the other and the machine's load changed between them"
            f"{load}; rerun on an idle machine, or with --threads below its {m.get('usable_cores', '?')} usable cores")


# ------------------------------------------------------------------ JSON


def to_json(result) -> str:
    return json.dumps(result, indent=2, allow_nan=False, default=str) + "\n"


def write_json(result, path) -> Path:
    atomic_write_text(Path(path), to_json(result))
    return Path(path)


# ------------------------------------------------------------------ Markdown


def violations_table(budget: dict) -> list[str]:
    rows = ["| metric | limit | value | over by |", "|---|---|---|---|"]
    for v in budget.get("violations") or []:
        if v.get("over_by") is None:
            rows.append(f"| {v['metric']} | {v['limit']} | {v['value']} | – |")
        else:
            pct = f" ({v['over_by_pct']:.0f}%)" if v.get("over_by_pct") is not None else ""
            rows.append(f"| {v['metric']} | {_f(v['limit'], '{:g}')} {v.get('unit', '')} | "
                        f"{_f(v['value'], '{:.4g}')} {v.get('unit', '')} | {_f(v['over_by'], '{:.4g}')}{pct} |")
    return rows


def to_markdown(result: dict) -> str:
    r = result
    lat, e2e, thr = r["latency_ms"], r["end_to_end_ms"], r["throughput_fps"]
    m = r["machine"]
    out = [f"# edgeseg bench: {r.get('model')} on {r.get('target')} ({r.get('format')}, {r.get('precision')})", "",
           f"- artifact: `{r['artifact']}`", f"- input {r['input_size'][0]}x{r['input_size'][1]}; image: {r['image']}",
           f"- machine: {m['cpu']}, {m['usable_cores']} usable cores, threads {m['threads'] or 'runtime default'}, "
           f"load average {m['load_average']}",
           f"- ran on: {execution_line(r)}",
           f"- runtimes: " + ", ".join(f"{k} {v}" for k, v in r["runtime_versions"].items()),
           f"- model-only: {r['method']['model_only']}; {r['method']['runs']} runs after {r['method']['warmup']} warm-up",
           "", "## Latency (ms)", "", "| | p50 | p90 | p99 | mean | min | max |", "|---|---|---|---|---|---|---|"]
    for name, s in (("model only", lat), ("end to end", e2e)):
        out.append(f"| {name} | " + " | ".join(_f(s[k]) for k in ("p50", "p90", "p99", "mean", "min", "max")) + " |")
    if timing_note(r):
        out += ["", f"**Note:** {timing_note(r)}."]
    st = r.get("stages_p50_ms") or {}
    out += ["", "End-to-end stages (p50 ms): " + ", ".join(f"{k} {_f(v)}" for k, v in st.items()), "",
            f"Throughput: sync {_f(thr['sync'], '{:.1f}')} FPS, end to end {_f(thr['end_to_end'], '{:.1f}')} FPS, "
            f"parallel requests {_f(thr.get('async'), '{:.1f}')} FPS"
            + (f" ({thr['async_requests']} requests: {thr['async_method']})" if thr.get("async") else " (not offered by this runtime)"),
            "", f"Peak memory: {_f(r['peak_memory_mb'], '{:.1f}')} MB"
            + (f" (after loading the model {_f(r['memory']['baseline_mb'], '{:.1f}')} MB; {r['memory'].get('process')})"
               if r.get("memory") else ""),
            f"Model size: {_f(r['size_mb'], '{:.3f}')} MB ({', '.join(r['size_files'])})", ""]
    if r.get("miou") is not None or r.get("per_class_iou"):
        ref = r.get("reference") or {}
        out += ["## Accuracy", "", f"mIoU {_f(r['miou'], '{:.4f}')}, pixel accuracy {_f(r['pixel_accuracy'], '{:.4f}')}"
                + (f"; fp32 PyTorch reference mIoU {_f(ref.get('miou'), '{:.4f}')} (change {_f(ref.get('delta_miou'), '{:+.4f}')})"
                   if ref.get("available") else f"; reference: {ref.get('reason', 'not run')}"), "",
                "| class | IoU | fp32 IoU | change |", "|---|---|---|---|"]
        for c, v in r["per_class_iou"].items():
            rv = (ref.get("per_class_iou") or {}).get(c)
            d = (ref.get("delta_per_class") or {}).get(c)
            out.append(f"| {c} | {_f(v, '{:.4f}')} | {_f(rv, '{:.4f}')} | {_f(d, '{:+.4f}')} |")
        out.append("")
    if r.get("flags"):
        out += ["## Flags", ""] + [f"- **{f}**" for f in r["flags"]] + [""]
    b = r["budget"]
    lim = b["limits"]
    out += ["## Budget", "", f"Limits: end-to-end p99 {_f(lim.get('p99_ms'), '{:g}')} ms, peak memory "
            f"{_f(lim.get('memory_mb'), '{:g}')} MB, min mIoU {_f(lim.get('min_miou'), '{:g}')} "
            f"(sources: {', '.join(f'{k}: {v}' for k, v in lim.get('sources', {}).items()) or 'none'})", "",
            "**PASSED**" if b["passed"] else "**FAILED**", ""]
    if b["violations"]:
        out += violations_table(b) + [""]
    return "\n".join(out)


def matrix_markdown(rows: list[dict]) -> str:
    cols = ["target", "format", "precision", "size MB", "mIoU", "change vs fp32", "p50 ms", "p99 ms", "FPS",
            "peak MB", "budget"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        out.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ SVG plots

# Text boxes are estimated from the font size, as a browser will lay them out: sans-serif fonts
# (DejaVu Sans, Arial, Helvetica) advance 0.5-0.64 em per character and reach about 0.93 em above
# the baseline and 0.24 em below it. The estimates err wide; tests/test_bench_html.py checks the
# real layout in Chromium.
_EM_W, _ASC, _DESC = 0.64, 0.95, 0.25


def _text_w(s: str, size: float) -> float:
    return len(s) * size * _EM_W


def _tbox(x, y, s, size, anchor="start") -> tuple:
    w = _text_w(s, size)
    x0 = x if anchor == "start" else x - w if anchor == "end" else x - w / 2
    return (x0, y - size * _ASC, x0 + w, y + size * _DESC)


def _text(x, y, s, size, anchor="start", extra="") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}"'
            + (f' text-anchor="{anchor}"' if anchor != "start" else "") + (f" {extra}" if extra else "")
            + f">{html.escape(s)}</text>")


class _Layout:
    """The boxes already on a plot. :meth:`place` puts a label at the first candidate spot that
    overlaps none of them and stays inside ``bounds`` (else at the least crowded spot)."""

    def __init__(self, bounds):
        self.bounds = bounds
        self.boxes: list[tuple] = []

    def add(self, box) -> None:
        self.boxes.append(box)

    def text(self, x, y, s, size, anchor="start", extra="") -> str:
        self.add(_tbox(x, y, s, size, anchor))
        return _text(x, y, s, size, anchor, extra)

    def _free(self, b, pad=1.5) -> int:
        return sum(b[0] < o[2] + pad and o[0] < b[2] + pad and b[1] < o[3] + pad and o[1] < b[3] + pad
                   for o in self.boxes)

    def place(self, s, size, candidates, extra="") -> str:
        x0, y0, x1, y1 = self.bounds
        best = None
        for x, y, anchor in candidates:
            b = _tbox(x, y, s, size, anchor)
            score = (not (b[0] >= x0 and b[1] >= y0 and b[2] <= x1 and b[3] <= y1), self._free(b))
            if best is None or score < best[0]:
                best = (score, x, y, anchor)
            if score == (False, 0):
                break
        _, x, y, anchor = best
        return self.text(x, y, s, size, anchor, extra)


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def _nice_range(lo: float, hi: float, n: int = 5) -> tuple[float, float, list[float], str]:
    """(lo, hi) widened to multiples of a round step (1, 2, 2.5 or 5 x 10^k), the ticks, and
    the tick format with just enough decimals."""
    step = _nice_max((hi - lo) / n)
    lo2, hi2 = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    if hi2 <= lo2:
        hi2 = lo2 + step
    k = round((hi2 - lo2) / step)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(round(step, decimals) - step) > 1e-9 * step:  # 2.5 x 10^k
        decimals += 1
    return lo2, hi2, [lo2 + i * step for i in range(k + 1)], f"{{:.{decimals}f}}"


def _axes(w, h, ml, mr, mt, mb, xlo, xhi, ylo, yhi, xlabel, ylabel, xfmt="{:g}", yfmt="{:g}", xticks=None):
    """Frame, ticks and axis titles; returns ``(body, sx, sy, pw, ph, layout)`` with every text
    drawn so far in ``layout``. The right margin grows to fit the last x tick's label."""
    xticks = _ticks(xlo, xhi) if xticks is None else xticks
    if xfmt:
        mr = max(mr, math.ceil(_text_w(xfmt.format(xticks[-1]), 11) / 2) + 3)
    pw, ph = w - ml - mr, h - mt - mb
    sx = lambda v: ml + (v - xlo) / (xhi - xlo) * pw  # noqa: E731
    sy = lambda v: mt + ph - (v - ylo) / (yhi - ylo) * ph  # noqa: E731
    lay = _Layout((ml, mt, ml + pw, mt + ph))
    s = [f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fff" stroke="#888"/>']
    for t in xticks:
        s.append(f'<line x1="{sx(t):.1f}" y1="{mt + ph}" x2="{sx(t):.1f}" y2="{mt + ph + 5}" stroke="#888"/>')
        if xfmt:
            s.append(lay.text(sx(t), mt + ph + 18, xfmt.format(t), 11, "middle"))
    for t in _ticks(ylo, yhi):
        s.append(f'<line x1="{ml - 5}" y1="{sy(t):.1f}" x2="{ml}" y2="{sy(t):.1f}" stroke="#888"/>'
                 f'<line x1="{ml}" y1="{sy(t):.1f}" x2="{ml + pw}" y2="{sy(t):.1f}" stroke="#eee"/>')
        s.append(lay.text(ml - 8, sy(t) + 4, yfmt.format(t), 11, "end"))
    if xlabel:
        s.append(lay.text(ml + pw / 2, h - 6, xlabel, 12, "middle"))
    lw = _text_w(ylabel, 12)
    lay.add((14 - 12 * _ASC, mt + ph / 2 - lw / 2, 14 + 12 * _DESC, mt + ph / 2 + lw / 2))  # rotated
    s.append(f'<text transform="translate(14 {mt + ph / 2}) rotate(-90)" font-size="12" text-anchor="middle">'
             f'{html.escape(ylabel)}</text>')
    return s, sx, sy, pw, ph, lay


def _svg(w, h, body, title, cls):
    return (f'<svg class="plot {cls}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
            + "".join(body) + "</svg>")


def _legend(lay: _Layout, x, y, items) -> str:
    """Colour squares with labels, left to right from (x, y) (the top of the squares)."""
    out = []
    for label, col in items:
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{col}"/>')
        lay.add((x, y, x + 12, y + 12))
        out.append(lay.text(x + 16, y + 10, label, 11))
        x += 16 + _text_w(label, 11) + 12
    return "".join(out)


def _legend_width(items) -> float:
    return sum(16 + _text_w(label, 11) + 12 for label, _ in items) - 12


def svg_accuracy_latency(results: list[dict], w=560, h=360, front: bool = False) -> str:
    """mIoU (y) against end-to-end p99 latency (x), one point per result; the budget region
    (p99 <= limit, mIoU >= min) shaded green; the fp32 reference mIoU dashed. Labels go where
    they overlap no other text and no point."""
    pts = [(r["end_to_end_ms"]["p99"], r.get("miou"), _label(r)) for r in results]
    lim = results[0]["budget"]["limits"]
    p99_lim, miou_lim = lim.get("p99_ms"), lim.get("min_miou")
    has_acc = any(y is not None for _, y, _ in pts)
    xhi = _nice_max(max([x for x, _, _ in pts] + ([p99_lim] if p99_lim else [])) * 1.15)
    ys = [y for _, y, _ in pts if y is not None]
    ref = next((r["reference"]["miou"] for r in results if (r.get("reference") or {}).get("miou") is not None), None)
    yhi = min(1.0, _nice_max(max(ys + ([ref] if ref else []) + ([miou_lim] if miou_lim else []) + [0.05]) * 1.15))
    body, sx, sy, pw, ph, lay = _axes(w, h, 56, 16, 28, 44, 0, xhi, 0, yhi, "end-to-end p99 latency (ms)", "mIoU",
                                      yfmt="{:.2f}")
    title = "Accuracy vs latency" + ("" if has_acc else " (no --data: mIoU not measured)")
    body.append(lay.text(w / 2, 18, title, 13, "middle", 'font-weight="bold"'))
    x1 = sx(min(p99_lim, xhi)) if p99_lim else sx(xhi)
    y0 = sy(min(miou_lim, yhi)) if miou_lim else sy(0)
    body.insert(1, f'<rect class="budget-region" x="{sx(0):.1f}" y="{sy(yhi):.1f}" width="{x1 - sx(0):.1f}" '
                   f'height="{y0 - sy(yhi):.1f}" fill="#2ca02c" fill-opacity="0.15"/>')
    body.append(lay.text(sx(0) + 6, sy(yhi) + 14, "within budget", 11, extra='fill="#2a7a2a"'))
    xy = [(sx(x), sy(y) if y is not None else sy(0) - 2) for x, y, _ in pts]
    for cx, cy in xy:  # labels keep off the points
        lay.add((cx - 7, cy - 7, cx + 7, cy + 7))
    if ref is not None:
        ry, right, left = sy(ref), sx(xhi) - 4, sx(0) + 4
        body.append(f'<line x1="{sx(0)}" y1="{ry:.1f}" x2="{sx(xhi)}" y2="{ry:.1f}" stroke="#555" '
                    f'stroke-dasharray="5 4"/>')
        body.append(lay.place(f"fp32 PyTorch {ref:.3f}", 11, [(right, ry - 4, "end"), (right, ry + 13, "end"),
                                                              (left, ry - 4, "start"), (left, ry + 13, "start")]))
    if front:  # the Pareto front (results marked "front"), joined left to right
        line = sorted((p for p, r in zip(xy, results) if r.get("front")), key=lambda p: p[0])
        if len(line) > 1:
            body.append('<polyline class="front" fill="none" stroke="#d62728" stroke-width="1.5" points="'
                        + " ".join(f"{x:.1f},{y:.1f}" for x, y in line) + '"/>')
        body.append(lay.text(sx(xhi) - 4, sy(yhi) + 14, "Pareto front", 11, "end", 'fill="#d62728"'))
    for i, ((cx, cy), (_, y, lab)) in enumerate(zip(xy, pts)):
        c = COLORS[i % len(COLORS)]
        body.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{c}" stroke="#000"/>')
        spots = [(cx + 9, cy - 8, "start"), (cx + 9, cy + 17, "start"), (cx - 9, cy - 8, "end"),
                 (cx - 9, cy + 17, "end")]
        for k in range(1, 6):  # further up and down, either side
            spots += [(cx + 9, cy - 8 - 13 * k, "start"), (cx + 9, cy + 17 + 13 * k, "start"),
                      (cx - 9, cy - 8 - 13 * k, "end"), (cx - 9, cy + 17 + 13 * k, "end")]
        if lab:  # an empty label: the point alone (fit labels only its front)
            body.append(lay.place(lab + ("" if y is not None else " (no mIoU)"), 11, spots))
    return _svg(w, h, body, title, "accuracy-latency")


def svg_per_class(result: dict, w=720, h=360) -> str:
    """Grouped bars: per-class IoU of the fp32 source (grey) and of the deployed model (blue)."""
    per = result.get("per_class_iou") or {}
    ref = (result.get("reference") or {}).get("per_class_iou") or {}
    classes = list(per) or list(result.get("classes") or [])
    n = max(1, len(classes))
    # class names are drawn turned 40 degrees down to the right: the margins hold the longest
    cos, sin = math.cos(math.radians(40)), math.sin(math.radians(40))
    longest = max([_text_w(str(c), 11) for c in classes] + [0])
    mb = max(40, math.ceil(12 + longest * sin + 11 * cos + 4))
    last = _text_w(str(classes[-1]), 11) * cos + 11 * _ASC * sin if classes else 0
    mr = max(16, math.ceil(last - (w - 64) / n / 2 + 3))
    mt = 44  # the legend sits above the frame, where no bar reaches
    body, sx, sy, pw, ph, lay = _axes(w, h, 48, mr, mt, mb, 0, n, 0, 1.0, "", "IoU", xfmt="", yfmt="{:.1f}")
    bw = pw / n
    for i, c in enumerate(classes):
        for j, (v, col, who) in enumerate(((ref.get(c), "#999", "fp32"), (per.get(c), "#1f77b4", "deployed"))):
            if v is None:
                continue
            x = 48 + i * bw + bw * (0.12 + 0.38 * j)
            body.append(f'<rect class="bar {who}" x="{x:.1f}" y="{sy(v):.1f}" width="{bw * 0.36:.1f}" '
                        f'height="{sy(0) - sy(v):.1f}" fill="{col}"><title>{html.escape(c)} {who}: {v:.3f}</title></rect>')
        body.append(f'<text transform="translate({48 + (i + 0.5) * bw:.1f} {mt + ph + 12}) rotate(40)" font-size="11">'
                    f'{html.escape(str(c))}</text>')
    title = "Per-class IoU: fp32 source vs deployed" + ("" if per else " (no --data: not measured)")
    items = [("fp32 PyTorch", "#999"), ("deployed", "#1f77b4")]
    body.append(lay.text(w / 2, 18, title, 13, "middle", 'font-weight="bold"'))
    body.append(_legend(lay, w - mr - _legend_width(items), 25, items))
    return _svg(w, h, body, title, "per-class-iou")


def svg_histogram(result: dict, w=560, h=320, bins=30) -> str:
    """Histograms of model-only and end-to-end latency samples, p50/p99 marked; marker labels
    stack where lines are close."""
    s = result.get("samples_ms") or {}
    model, e2e = s.get("model") or [], s.get("end_to_end") or []
    marks = [(result[k][q], q, col) for k, col in (("latency_ms", "#1f77b4"), ("end_to_end_ms", "#ff7f0e"))
             for q in ("p50", "p99")]
    allv = model + e2e + [v for v, _, _ in marks if v is not None]
    lo, hi = (min(allv), max(allv)) if allv else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    lo, hi, xticks, xfmt = _nice_range(lo, hi, 8)
    width = (hi - lo) / bins

    def counts(v):
        c = [0] * bins
        for x in v:
            c[min(bins - 1, max(0, int((x - lo) / width)))] += 1
        return c

    cm, ce = counts(model), counts(e2e)
    ymax = _nice_max(max(cm + ce + [4]) * 1.25)  # head room for the marker labels; whole-number ticks
    mt = 44  # the legend sits above the frame
    body, sx, sy, pw, ph, lay = _axes(w, h, 48, 16, mt, 44, lo, hi, 0, ymax, "latency (ms)", "runs", xfmt=xfmt,
                                      yfmt="{:.0f}", xticks=xticks)
    for c, col, who in ((ce, "#ff7f0e", "end-to-end"), (cm, "#1f77b4", "model")):
        for i, n in enumerate(c):
            if n:
                x = sx(lo + i * width)
                body.append(f'<rect class="hist {who}" x="{x:.1f}" y="{sy(n):.1f}" width="{max(1.0, pw / bins - 1):.1f}" '
                            f'height="{sy(0) - sy(n):.1f}" fill="{col}" fill-opacity="0.7"/>')
    title = f"Latency histogram ({len(model)} runs)"
    items = [("model only", "#1f77b4"), ("end to end", "#ff7f0e")]
    body.append(lay.text(w / 2, 18, title, 13, "middle", 'font-weight="bold"'))
    body.append(_legend(lay, sx(hi) - _legend_width(items), 25, items))
    for v, q, col in sorted((m for m in marks if m[0] is not None), key=lambda m: m[0]):
        x = sx(v)
        body.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="{col}" stroke-dasharray="3 3"/>')
        spots = [spot for k in range(8) for spot in ((x + 3, mt + 12 + 12 * k, "start"), (x - 3, mt + 12 + 12 * k, "end"))]
        body.append(lay.place(q, 10, spots, f'fill="{col}"'))
    return _svg(w, h, body, title, "latency-histogram")


# ------------------------------------------------------------------ HTML

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1150px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.pass{color:#1a7f1a;font-weight:bold}
.fail{color:#b00;font-weight:bold}.plots{display:flex;flex-wrap:wrap;gap:16px}.plots svg{border:1px solid #ddd;background:#fff}
.flag{background:#fee;border:1px solid #d88;padding:6px 10px;margin:4px 0}code{background:#f4f4f4;padding:1px 4px}"""


def _md_table_to_html(lines: list[str]) -> str:
    rows = [ln.strip().strip("|").split("|") for ln in lines if ln.strip() and not set(ln.strip()) <= set("|-")]
    if not rows:
        return ""
    head, *rest = rows
    return ("<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c.strip().replace('**', ''))}</td>" for c in r) + "</tr>"
                      for r in rest) + "</table>")


def to_html(result: dict, matrix: list[dict] | None = None) -> str:
    """One self-contained page: summary tables and the three inline-SVG plots."""
    r = result
    lat, e2e, thr, m, b = r["latency_ms"], r["end_to_end_ms"], r["throughput_fps"], r["machine"], r["budget"]
    title = f"edgeseg bench: {r.get('model')} on {r.get('target')} ({r.get('precision')})"
    p = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
         f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
         f"<p>Artifact <code>{html.escape(r['artifact'])}</code>, {html.escape(_format_on_runtime(r))}, "
         f"input {r['input_size'][0]}x{r['input_size'][1]}; "
         f"{html.escape(r['image'])}.<br>Machine: {html.escape(m['cpu'])}, {m['usable_cores']} usable cores, threads "
         f"{m['threads'] or 'runtime default'}, load average {m['load_average']}.<br>Ran on: "
         f"{html.escape(execution_line(r))}.<br>Model-only: "
         f"{html.escape(r['method']['model_only'])}; {r['method']['runs']} runs after {r['method']['warmup']} warm-up.</p>",
         f"<p class='{'pass' if b['passed'] else 'fail'}'>Budget: {'PASSED' if b['passed'] else 'FAILED'}</p>"]
    if b["violations"]:
        p.append(_md_table_to_html(violations_table(b)))
    for f in r.get("flags") or []:
        p.append(f"<div class='flag'>Flag: {html.escape(f)}</div>")
    p.append("<h2>Latency (ms)</h2><table><tr><th></th>" + "".join(f"<th>{k}</th>" for k in
             ("p50", "p90", "p99", "mean", "min", "max")) + "</tr>")
    for name, s in (("model only", lat), ("end to end", e2e)):
        p.append(f"<tr><td>{name}</td>" + "".join(f"<td>{_f(s[k])}</td>" for k in ("p50", "p90", "p99", "mean", "min", "max"))
                 + "</tr>")
    p.append("</table>")
    if timing_note(r):
        p.append(f"<div class='flag note'>Note: {html.escape(timing_note(r))}.</div>")
    p.append(f"<p>Throughput: sync {_f(thr['sync'], '{:.1f}')} FPS; end to end {_f(thr['end_to_end'], '{:.1f}')} FPS; "
             f"parallel requests {_f(thr.get('async'), '{:.1f}')} FPS. Peak memory {_f(r['peak_memory_mb'], '{:.1f}')} MB "
             f"({html.escape(str((r.get('memory') or {}).get('process') or 'fresh process'))}). Model size {_f(r['size_mb'], '{:.3f}')} MB. mIoU {_f(r.get('miou'), '{:.4f}')}, "
             f"pixel accuracy {_f(r.get('pixel_accuracy'), '{:.4f}')}.</p>")
    if matrix:
        p.append("<h2>Matrix</h2>" + _md_table_to_html(matrix_markdown(matrix).splitlines()))
    pts = [x["result"] for x in (matrix or []) if x.get("result")] or [r]
    p.append("<h2>Plots</h2><div class='plots'>" + svg_accuracy_latency(pts) + svg_histogram(r) + svg_per_class(r)
             + "</div>")
    p.append(f"<h2>Runtime versions</h2><p>{html.escape(', '.join(f'{k} {v}' for k, v in r['runtime_versions'].items()))}</p>")
    p.append("</body></html>\n")
    return "\n".join(p)


def write_reports(result: dict, *, json_path=None, md_path=None, html_path=None, matrix=None) -> list[Path]:
    written = []
    if json_path:
        written.append(write_json(result if matrix is None else {**result, "matrix": _strip(matrix)}, json_path))
    if md_path:
        text = to_markdown(result) if matrix is None else "# edgeseg bench --matrix\n\n" + matrix_markdown(matrix)
        atomic_write_text(Path(md_path), text + ("\n" if not text.endswith("\n") else ""))
        written.append(Path(md_path))
    if html_path:
        atomic_write_text(Path(html_path), to_html(result, matrix))
        written.append(Path(html_path))
    return written


def _strip(matrix):
    return [{k: v for k, v in row.items() if k != "result"} | {"result": _no_samples(row.get("result"))} for row in matrix]


def _no_samples(r):
    return None if r is None else {k: v for k, v in r.items() if k != "samples_ms"}


__all__ = ["timing_note", "to_json", "write_json", "to_markdown", "to_html", "matrix_markdown", "write_reports",
           "svg_accuracy_latency", "svg_per_class", "svg_histogram", "violations_table"]
