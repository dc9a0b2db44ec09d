"""``edgeseg doctor``: versions, CPU features, devices and what each target can do here."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def _yes(v) -> str:
    return "yes" if v else "no"


def doctor_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
):
    """Versions of every runtime and extra, CPU ISA (int8/bf16), devices each runtime sees,
    and for every target whether it builds and runs here and what to install if not."""
    from edgeseg.doctor import report

    r = report()
    if as_json:
        typer.echo(json.dumps(r, indent=2, default=str))
        return
    echo = typer.echo
    echo("versions")
    for name, v in r["versions"].items():
        echo(f"  {name:<24} {v or '-'}")
    m = r["machine"]
    echo("\nmachine")
    echo(f"  cpu                      {m['cpu']} ({m['arch']})")
    echo(f"  isa                      {m['isa']}  [{' '.join(m['flags']) or 'none of interest'}]")
    echo(f"  int8 dot products        {_yes(m['int8_dot'])} (VNNI / AMX-INT8)")
    bf16, slow = _yes(m["bf16_runtime"]), m.get("bf16_slower_than_fp32") or {}
    if slow:  # runs is not "use it": say where the probe measured it slower
        bf16 += ("  (--precision bf16 runs here, but measured slower than fp32: "
                 + ", ".join(f"{t} {r:.2f}x" for t, r in slow.items()) + ")")
    elif m["bf16_runtime"]:
        bf16 += "  (--precision bf16 runs here)"
    echo(f"  bf16                     {bf16}")
    echo("\ndevices")
    for name, probe in r["devices"].items():
        echo(f"  {name}: {probe.get('summary') or probe.get('error') or 'unknown'}")
    echo("\ntargets")
    for t in r["targets"]:
        line = f"  {t['target']:<16} build {_yes(t['build']):<4} run {_yes(t['run']):<4}"
        if t["run"]:
            line += f" precisions {','.join(t['precisions_here'])}"
        else:
            line += f" ({t['why_not_run']})"
        if t["install"]:
            line += f"; to build: {'; '.join(t['install'])}"
        for note in t["notes"]:
            line += f"; {note}"
        echo(line)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_cmd)
