"""Benchmark edgeseg.compress on a real checkpoint and record the result in docs/compress.md.

    python tools/bench_compress.py CKPT --data DIR [--steps 40] [--val-images 40] [--out runs/bench_compress]

Runs one ``compress()`` with QAT, structured pruning of ``--prune`` (default 0.3) + QAT,
(optionally) accuracy-controlled PTQ, and writes ``report.json`` / ``report.md`` under
``--out``. With ``--docs``, the generated report and the exact command are placed between
the ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` markers of docs/compress.md (the
numbers come from the run; nothing is typed by hand).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", help="checkpoint or zoo name (not needed with --from-report)")
    ap.add_argument("--from-report", default=None,
                    help="render docs from an earlier run's OUT/report.json instead of running")
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/bench_compress")
    ap.add_argument("--prune", type=float, default=0.3)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=0, help="fine-tuning steps per phase (0 = --epochs)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--prune-epochs", type=float, default=None, help="pruned model's fine-tuning (default --epochs)")
    ap.add_argument("--prune-lr", type=float, default=None)
    ap.add_argument("--command", default=None, help="with --from-report: the command that produced the report")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--val-images", type=int, default=None)
    ap.add_argument("--calib-images", type=int, default=32)
    ap.add_argument("--max-drop", type=float, default=None, help="also run accuracy-controlled PTQ")
    ap.add_argument("--ptq", action="store_true")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--docs", action="store_true", help="write the result into docs/compress.md")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from edgeseg.compress_run import compress

    torch.set_num_threads(args.torch_threads)
    t0 = time.time()
    if args.from_report:
        import json

        report = json.loads((Path(args.from_report) / "report.json").read_text())
        cmd = (f"{args.command} (rendered from its report.json)" if args.command
               else f"(rendered from {args.from_report}/report.json)")
        return _render(report, report["run"].get("seconds", 0.0), cmd, args.from_report, args.docs)
    if not args.source or not args.data:
        ap.error("SOURCE and --data are needed (or --from-report DIR)")
    report = compress(args.source, args.data, qat=True, ptq=args.ptq, max_drop=args.max_drop, prune=args.prune,
                      prune_mode="structured", epochs=args.epochs, steps=args.steps, lr=args.lr,
                      prune_epochs=args.prune_epochs, prune_lr=args.prune_lr,
                      batch_size=args.batch_size, out=args.out, val_images=args.val_images,
                      calib_images=args.calib_images, runs=args.runs, threads=args.threads, force=args.force)
    cmd = "python tools/bench_compress.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    return _render(report, time.time() - t0, cmd, args.out, args.docs)


def _render(report: dict, wall: float, cmd: str, out: str, docs: bool) -> int:
    from edgeseg.compress_report import to_markdown

    md = to_markdown(report)
    text = (f"Command: `{cmd}`  \nWall time {wall / 60:.1f} min (fine-tuning: "
            + ", ".join(f"{k} {v.get('steps')} steps" for k, v in report["finetune"].items())
            + f"); full JSON in `{out}/report.json`.\n\n" + md.split("\n", 2)[2])
    print(md)
    if docs:
        doc = ROOT / "docs" / "compress.md"
        body = doc.read_text()
        if BEGIN not in body or END not in body:
            print(f"{doc} has no {BEGIN} ... {END} markers; not updated", file=sys.stderr)
            return 1
        head, rest = body.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        from edgeseg.train.checkpoint import atomic_write_text

        atomic_write_text(doc, head + BEGIN + "\n" + text + "\n" + END + tail)
        print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
