"""``edgeseg bench``: measure an artifact (or a target built on the fly) in its real runtime,
write JSON / Markdown / HTML reports, and gate on a budget (exit 3 when one fails)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.cli.own import takes_your_model


def _print_result(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=150)
    lat, e2e, thr = r["latency_ms"], r["end_to_end_ms"], r["throughput_fps"]
    m = r["machine"]
    con.print(f"{r.get('model')} on {r.get('target')} ({r.get('format')}, {r.get('precision')}), input "
              f"{r['input_size'][0]}x{r['input_size'][1]}; {m['cpu']}, threads {m['threads'] or 'default'}, "
              f"load {m['load_average']}", highlight=False)
    from edgeseg.bench.report import execution_line

    con.print(f"ran on: {execution_line(r)}", highlight=False)
    t = Table(title="latency (ms)")
    for c in ("", "p50", "p90", "p99", "mean", "min", "max"):
        t.add_column(c, justify="right")
    for name, s in (("model only", lat), ("end to end", e2e)):
        t.add_row(name, *(f"{s[k]:.2f}" for k in ("p50", "p90", "p99", "mean", "min", "max")))
    con.print(t)
    from edgeseg.bench.report import timing_note

    if timing_note(r):
        con.print(f"note: {timing_note(r)}", highlight=False, soft_wrap=True)  # one line, however long
    asy = f", parallel {thr['async']:.1f} FPS ({thr['async_requests']} requests)" if thr.get("async") else ""
    mem = f"{r['peak_memory_mb']:.1f} MB" if r.get("peak_memory_mb") is not None else "not measured"
    if (r.get("memory") or {}).get("process", "").startswith("plain runner"):
        mem += " (plain runtime process, as on the device)"
    con.print(f"throughput: sync {thr['sync']:.1f} FPS{asy}; peak memory {mem}; size {r['size_mb']:.3f} MB",
              highlight=False)
    if r.get("miou") is not None:
        ref = r.get("reference") or {}
        extra = (f"; fp32 reference {ref['miou']:.4f} (change {ref['delta_miou']:+.4f})"
                 if ref.get("available") and ref.get("miou") is not None and ref.get("delta_miou") is not None else
                 f"; no fp32 reference ({ref['reason']})" if ref.get("available") is False and ref.get("reason") else "")
        con.print(f"mIoU {r['miou']:.4f}, pixel accuracy {r['pixel_accuracy']:.4f}{extra}", highlight=False)
    for f in r.get("flags") or []:
        con.print(f"FLAG: {f}", highlight=False)
    for w in (r.get("accuracy") or {}).get("warnings") or []:
        con.print(f"warning: {w}", highlight=False)


def _print_remote(r: dict) -> None:
    m, lat = r["machine"] or {}, r["latency_ms"]
    typer.echo(f"{r.get('model')} on {r.get('target')} ({r.get('format')}, {r.get('precision')}), input "
               f"{r['input_size'][0]}x{r['input_size'][1]}, on {r['remote']['host']}: {m.get('cpu')} "
               f"({m.get('arch')}, {m.get('logical_cores')} cores), threads {m.get('threads') or 'default'}, "
               f"load {m.get('load_average')}")
    typer.echo("model only (ms): " + ", ".join(f"{k} {lat[k]:.2f}" for k in ("p50", "p90", "p99", "mean", "min", "max"))
               + f" ({lat['n']} runs: {r['method']['model_only']})")
    mem = f"{r['peak_memory_mb']:.1f} MB" if r.get("peak_memory_mb") is not None else "not measured"
    typer.echo(f"peak memory on the device {mem}; size {r['size_mb']:.3f} MB; runtimes "
               + ", ".join(f"{k} {v}" for k, v in (r.get("runtime_versions") or {}).items()))
    if r.get("miou") is not None:
        typer.echo(f"mIoU {r['miou']:.4f}, pixel accuracy {r['pixel_accuracy']:.4f} on {r['images']} images "
                   f"(predicted on the device)")
    typer.echo(f"the device's folder {r['remote']['folder']} "
               + ("was removed" if r["remote"]["removed"] else "could NOT be removed: remove it by hand"))


def _print_budget(b: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=150)
    if b["passed"]:
        lim = b["limits"]
        con.print(f"budget: PASSED (p99 {lim.get('p99_ms')} ms, memory {lim.get('memory_mb')} MB, "
                  f"min mIoU {lim.get('min_miou')})", highlight=False)
        return
    t = Table(title="budget FAILED")
    for c in ("metric", "limit", "value", "over by"):
        t.add_column(c)
    for v in b["violations"]:
        if v.get("over_by") is None:
            t.add_row(v["metric"], str(v["limit"]), str(v["value"]), "-")
        else:
            t.add_row(v["metric"], f"{v['limit']:g} {v['unit']}", f"{v['value']:.4g} {v['unit']}",
                      f"{v['over_by']:.4g} {v['unit']} ({v['over_by_pct']:.0f}%)")
    con.print(t)


def _next_steps(r: dict | None, artifact_or_target, source, data, html_out, rows=None) -> str:
    """The one or two commands a user most likely runs next (printed on stderr: stdout may carry
    the Markdown table)."""
    import shlex

    q = lambda v: shlex.quote(str(v))  # noqa: E731
    data_arg = f" --data {q(data)}" if data else " --data DIR"
    if rows is not None:  # the matrix: keep the fastest entry that passed its budget
        ok = [x for x in rows if x.get("result") and x["result"]["budget"]["passed"]]
        best = min(ok, key=lambda x: x["result"]["end_to_end_ms"]["p99"]) if ok else None
        if best is None:
            return f"next: edgeseg bench --matrix --model {q(source)}{data_arg} --budget-p99-ms MS (a looser budget)"
        t, prec = best["target"], best["precision"]
        return (f"next: edgeseg build {q(source)} --target {t} --precision {prec}{data_arg} --out artifacts/{t}-{prec}"
                f"\n      edgeseg demo --artifact artifacts/{t}-{prec} --source 0")
    if r.get("built_from"):  # a target built into a temporary folder: keep it this time
        t, prec = r["built_from"]["target"], r.get("precision")
        return (f"next: edgeseg build {q(r['built_from']['source'])} --target {t} --precision {prec}{data_arg} "
                f"--out artifacts/{t}-{prec}\n      edgeseg demo --artifact artifacts/{t}-{prec} --source 0")
    art = q(artifact_or_target)
    second = (f"edgeseg bench --matrix{data_arg}  (every target runnable here)" if html_out
              else f"edgeseg bench {art}{data_arg} --html report.html")
    return f"next: edgeseg demo --artifact {art} --source 0\n      {second}"


@takes_your_model("model", data="data")
def bench_cmd(
    artifact_or_target: Annotated[Optional[str], typer.Argument(
        help="Artifact folder (with manifest.json) or a target name (built first from --model).")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Checkpoint, zoo name or ONNX model to build a target (or the matrix) from (default: the zoo's "
             "best).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="Precision when building a target (default: the target's).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Labelled dataset: mIoU, per-class IoU vs the fp32 source.")] = None,
    split: Annotated[str, typer.Option(help="Split of --data.")] = "val",
    runs: Annotated[int, typer.Option(help="Timed runs.")] = 100,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs.")] = 10,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for the runtime (default: the runtime's).")] = None,
    budget_p99_ms: Annotated[Optional[float], typer.Option(
        "--budget-p99-ms", help="End-to-end p99 limit (default: the target profile's budget).")] = None,
    budget_memory_mb: Annotated[Optional[float], typer.Option(
        "--budget-memory-mb", help="Peak memory limit (default: the target profile's budget).")] = None,
    min_miou: Annotated[Optional[float], typer.Option("--min-miou", help="Lowest acceptable mIoU (needs --data).")] = None,
    memory_runs: Annotated[int, typer.Option(help="Inferences in the fresh memory-measuring process (0: skip).")] = 5,
    max_images: Annotated[Optional[int], typer.Option(help="Score at most this many images of --data.")] = None,
    crf: Annotated[bool, typer.Option("--crf", help="Score with dense-CRF refinement of the artifact's probabilities (needs --data).")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the JSON report here.")] = None,
    md_out: Annotated[Optional[Path], typer.Option("--md", help="Write the Markdown report here.")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write the HTML report (inline SVG plots) here.")] = None,
    matrix: Annotated[bool, typer.Option("--matrix", help="Build and bench every target/precision runnable here.")] = False,
    targets: Annotated[Optional[str], typer.Option(help="With --matrix: comma-separated targets, each optionally NAME:PREC[+PREC] (default: all).")] = None,
    precisions: Annotated[Optional[str], typer.Option(help="With --matrix: comma-separated precisions (default: all).")] = None,
    remote: Annotated[Optional[str], typer.Option(
        "--remote", help="Run on this device over ssh: a Host of your ssh config, or user@host[:port].")] = None,
    remote_python: Annotated[str, typer.Option("--remote-python", help="Python on the device (with numpy and the "
                                                                      "runtime).")] = "python3",
    remote_timeout: Annotated[float, typer.Option("--remote-timeout", help="Seconds the device may take.")] = 600,
    ssh_config: Annotated[Optional[Path], typer.Option("--ssh-config", help="ssh config file (default: ssh's own, "
                                                                           "~/.ssh/config).")] = None,
    devices: Annotated[Optional[Path], typer.Option("--devices", help="With --matrix: a devices.yaml; bench every "
                                                                     "device's targets on it, in parallel.")] = None,
):
    """Latency, throughput, memory, size and accuracy of an artifact; exit 3 when a budget fails."""
    from edgeseg.bench.budget import EXIT_BUDGET, resolve_budget
    from edgeseg.bench.core import bench, resolve_source
    from edgeseg.bench.report import matrix_markdown, write_reports
    from edgeseg.errors import ConfigError

    # check budget values before any slow work
    resolve_budget(None, p99_ms=budget_p99_ms, memory_mb=budget_memory_mb, min_miou=min_miou)
    if crf and data is None:
        raise ConfigError("--crf refines the scored predictions: give --data DIR too")
    kw = dict(runs=runs, warmup=warmup, threads=threads, budget_p99_ms=budget_p99_ms,
              budget_memory_mb=budget_memory_mb, min_miou=min_miou, memory_runs=memory_runs, max_images=max_images)
    if crf:
        kw["crf"] = True
    if devices is not None and not matrix:
        raise ConfigError("--devices goes with --matrix: edgeseg bench --matrix --devices devices.yaml")
    if matrix and devices is not None:
        from edgeseg.bench.remote import fleet_html, fleet_markdown, load_devices, run_fleet
        from edgeseg.files import atomic_write_text

        fleet = load_devices(devices)
        source = resolve_source(model)
        rows = run_fleet(source, fleet, data=data, split=split, runs=runs, warmup=warmup, max_images=max_images,
                         timeout=remote_timeout, say=lambda s: typer.echo(s, err=True))
        typer.echo(fleet_markdown(rows))
        if json_out is not None:
            import json

            atomic_write_text(json_out, json.dumps({"devices": rows}, indent=1, default=str) + "\n")
            typer.echo(f"wrote {json_out}")
        if html_out is not None:
            atomic_write_text(html_out, fleet_html(rows))
            typer.echo(f"wrote {html_out}")
        if not any(r.get("result") for r in rows):
            raise ConfigError("no device could be benched: " + "; ".join(f"{r['device']} {r['target']}: {r['budget']}"
                                                                       for r in rows))
        if any(r.get("result") is None or not r["result"]["budget"]["passed"] for r in rows):
            raise typer.Exit(EXIT_BUDGET)
        return
    if matrix:
        from edgeseg.bench.matrix import run_matrix

        if artifact_or_target is not None:
            raise ConfigError("--matrix builds every target itself: give --model (and --data), not an artifact or target")
        source = resolve_source(model)
        rows = run_matrix(source, targets=[t.strip() for t in targets.split(",")] if targets else None,
                          precisions=[p.strip().lower() for p in precisions.split(",")] if precisions else None,
                          data=data, split=split, progress=lambda s: typer.echo(s, err=True), **kw)
        typer.echo(matrix_markdown(rows))
        done = [r for r in rows if r.get("result")]
        if not done:
            raise ConfigError("no matrix entry could be built and benched: " +
                              "; ".join(f"{r['target']} {r['precision']}: {r['budget']}" for r in rows))
        write_reports({"schema_version": done[0]["result"]["schema_version"], **done[0]["result"]},
                      json_path=json_out, md_path=md_out, html_path=html_out, matrix=rows)
        failed = [r for r in done if not r["result"]["budget"]["passed"]]
        typer.echo(_next_steps(None, None, source, data, html_out, rows), err=True)
        if failed:
            typer.echo(f"budget FAILED for {len(failed)} of {len(done)}: "
                       + "; ".join(f"{r['target']} {r['precision']}: {r['budget']}" for r in failed), err=True)
            raise typer.Exit(EXIT_BUDGET)
        return
    if artifact_or_target is None:
        raise ConfigError("give ARTIFACT_OR_TARGET (an artifact folder or a target name) or --matrix")
    if remote:
        from edgeseg.bench.remote import bench_remote

        if crf:
            raise ConfigError("--crf is not available with --remote: the CRF needs the probabilities, which stay "
                              "on the device")
        r = bench_remote(artifact_or_target, remote, data=data, split=split, runs=runs, warmup=warmup,
                         threads=threads, max_images=max_images, python=remote_python, ssh_config=ssh_config,
                         timeout=remote_timeout, budget_p99_ms=budget_p99_ms, budget_memory_mb=budget_memory_mb,
                         min_miou=min_miou, say=lambda s: typer.echo(s, err=True))
        _print_remote(r)
        if json_out is not None:
            from edgeseg.bench.report import write_json

            typer.echo(f"wrote {write_json(r, json_out)}")
        _print_budget(r["budget"])
        if not r["budget"]["passed"]:
            raise typer.Exit(EXIT_BUDGET)
        return
    report: list[str] = []
    r = bench(artifact_or_target, model=model, precision=precision, data=data, split=split, report=report, **kw)
    for line in report:
        typer.echo(line, err=True)
    _print_result(r)
    for p in write_reports(r, json_path=json_out, md_path=md_out, html_path=html_out):
        typer.echo(f"wrote {p}")
    _print_budget(r["budget"])
    typer.echo(_next_steps(r, artifact_or_target, model, data, html_out), err=True)
    if not r["budget"]["passed"]:
        raise typer.Exit(EXIT_BUDGET)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
