"""Re-resolve edgeseg's dependency stack in a fresh venv and rewrite constraints.txt (the lock).

    python tools/lock_stack.py                    # resolve .[all] with today's releases, write the lock
    python tools/lock_stack.py --torch 2.14.1     # the same on another torch
    python tools/lock_stack.py --check-extras     # only check that each extra installs alone with the lock

Moving the stack to new versions is this command, then the test suite in a new venv
installed with the new lock (the README's commands). Nothing is written until the
resolution succeeded; the lock is replaced atomically.

Why a constraints file (pip's ``-c``), not a requirements file: it pins every package the
resolved ``.[all]`` stack contains without asking for any of them, so each extra
(``.[openvino]``, ``.[tflite]``, ``.[dev]``) still installs on its own with the same lock.

torch is installed first, by itself, exactly as the README does: on these machines
``pip install torch==X`` takes the local CPU wheel, and the lock then keeps every later
install on it (an extra such as litert-torch would otherwise swap it for a CUDA build).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "constraints.txt"
EXTRAS_ALONE = ("openvino", "tflite", "dev")


def _run(cmd: list[str], **kw) -> str:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"error: `{' '.join(cmd)}` failed (exit {done.returncode}); nothing was written")
    return done.stdout


def _fresh_venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    py = where / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    return py


def _installed_torch() -> str | None:
    for line in LOCK.read_text(encoding="utf-8").splitlines() if LOCK.is_file() else []:
        if line.strip().startswith("torch=="):
            return line.split("==", 1)[1].strip()
    return None


def resolve(torch_version: str, workdir: Path) -> list[str]:
    """``name==version`` lines of the resolved ``.[all]`` stack (edgeseg itself left out)."""
    py = _fresh_venv(workdir / "venv")
    _run([str(py), "-m", "pip", "install", "-q", f"torch=={torch_version}"])
    only_torch = workdir / "torch-only.txt"
    only_torch.write_text(f"torch=={torch_version}\n", encoding="utf-8")
    # editable, as the README installs (a plain install would leave build/ in the checkout)
    _run([str(py), "-m", "pip", "install", "-q", "-c", str(only_torch), "-e", f"{REPO}[all]"])
    frozen = _run([str(py), "-m", "pip", "list", "--format=freeze", "--exclude", "edgeseg",
                   "--exclude", "pip", "--exclude", "setuptools", "--exclude", "wheel"])
    lines = []
    for line in frozen.splitlines():
        name, _, version = line.partition("==")
        if not version:
            continue
        if name.lower() == "torch":
            version = torch_version  # '2.13.0+cpu' -> the version the README installs by name
        lines.append(f"{name}=={version}")
    return sorted(lines, key=str.lower)


def check_extras(workdir: Path) -> None:
    """Each extra of EXTRAS_ALONE installs alone, with the lock, in its own fresh venv."""
    torch_version = _installed_torch()
    if torch_version is None:
        raise SystemExit(f"error: {LOCK} pins no torch: run this tool without --check-extras first")
    for extra in EXTRAS_ALONE:
        py = _fresh_venv(workdir / f"venv-{extra}")
        _run([str(py), "-m", "pip", "install", "-q", f"torch=={torch_version}"])
        _run([str(py), "-m", "pip", "install", "-q", "-c", str(LOCK), "-e", f"{REPO}[{extra}]"])
        _run([str(py), "-c", "import edgeseg.cli.main"])
        print(f"ok: .[{extra}] installs alone with {LOCK.name}", flush=True)


def write_lock(lines: list[str], torch_version: str) -> None:
    header = [
        "# The locked stack: every package of the resolved `.[all]` install that the test suite passed on.",
        f"# Written by `python tools/lock_stack.py --torch {torch_version}` on "
        f"{dt.date.today().isoformat()} (Python {sys.version.split()[0]}).",
        "# Install with: pip install torch==<the torch below> && pip install -c constraints.txt -e \".[all]\"",
        "# Pinning torch here also stops an extra (litert-torch) from swapping the CPU build for a CUDA one.",
    ]
    fd, tmp = tempfile.mkstemp(prefix=".constraints.", dir=LOCK.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(header + lines) + "\n")
    os.replace(tmp, LOCK)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch", default=None, help="torch version to lock (default: the one the lock pins now)")
    ap.add_argument("--check-extras", action="store_true",
                    help=f"only check that {', '.join(EXTRAS_ALONE)} each install alone with the lock")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeseg-lock-") as work:
        if args.check_extras:
            check_extras(Path(work))
            return
        torch_version = args.torch or _installed_torch() or "2.13.0"
        lines = resolve(torch_version, Path(work))
    write_lock(lines, torch_version)
    print(f"wrote {LOCK} ({len(lines)} packages); now run the README's set-up and tests in a new venv")


if __name__ == "__main__":
    main()
