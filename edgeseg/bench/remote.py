"""``edgeseg bench ARTIFACT --remote HOST``: measure an artifact on the user's own device over ssh.

The device needs Python 3, numpy and the runtime, nothing else (neither edgeseg nor torch):

1. here, the images are padded or resized to the model's size (the first half of
   ``Predictor.preprocess``; the device normalises them with the same code) and packed with the artifact's files, its manifest and one runner file
   (:meth:`edgeseg.formats.base.Unit.runner_script`: the shared core and the format unit's
   plain-runtime half) into a tar stream;
2. one ``ssh HOST`` unpacks it into a new temporary folder on the device, a second runs the
   runner there (warm-up, timed runs of the runtime's bare call, each image's class map, peak
   memory, the device's machine info and runtime versions), a third fetches the class maps,
   which are post-processed and scored here;
3. the folder is removed whatever happened.

The system ``ssh`` does the connecting, with the user's ssh config, keys and agent; host keys
are checked as ssh checks them (``BatchMode=yes`` only stops it from asking questions: a
prompt would hang a benchmark). Every failure is one line: unknown host, refused key, unknown
host key, a missing runtime on the device, a device that dies mid-run, a timeout.
"""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.ssh import Remote, RemoteError, artifact_payload, device_folder

__all__ = ["bench_remote", "load_devices", "run_fleet", "fleet_markdown", "fleet_html", "RemoteError"]


def _pack(artifact: Path, manifest: dict, script: str, inputs: dict) -> bytes:
    npz = io.BytesIO()
    np.savez(npz, **inputs)
    return artifact_payload(artifact, manifest, {"manifest.json": json.dumps(manifest).encode(),
                                                 "runner.py": script.encode(), "inputs.npz": npz.getvalue()})


def bench_remote(artifact, host: str, *, data=None, split: str = "val", runs: int = 100, warmup: int = 10,
                 threads: int | None = None, max_images: int | None = None, python: str = "python3",
                 ssh_config=None, timeout: float = 600, budget_p99_ms=None, budget_memory_mb=None,
                 min_miou=None, say=lambda s: None) -> dict:
    """Bench ``artifact`` on ``host``; a result with the keys of a local bench where they apply."""
    from edgeseg.bench.accuracy import open_split
    from edgeseg.bench.budget import check_budget, resolve_budget
    from edgeseg.bench.core import SCHEMA_VERSION, latency_image, model_size_mb
    from edgeseg.bench.latency import decode_image
    from edgeseg.formats import get_unit, read_manifest
    from edgeseg.data.transforms import MEAN_RGB_U8
    from edgeseg.formats.predictor import Predictor
    from edgeseg.formats.runner_core import fit_image
    from edgeseg.metrics import score

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    budget = resolve_budget(manifest.get("target"), p99_ms=budget_p99_ms, memory_mb=budget_memory_mb,
                            min_miou=min_miou)
    if min_miou is not None and data is None:
        raise RemoteError("--min-miou needs --data (a labelled split to measure mIoU on)")
    script = get_unit(manifest["runtime"]).runner_script()
    pre = Predictor(artifact, manifest)  # pre/post-processing only: no runtime needed here
    encoded, image_source = latency_image(manifest, data, split)

    def fitted(image):  # padded / resized to the model's size; the device normalises (to_input)
        return fit_image(image, pre.input_size, pre.fit, MEAN_RGB_U8)

    inputs = {"latency": fitted(decode_image(encoded))[0]}
    pairs, metas = [], []
    if data is not None:
        ds = open_split(data, split, manifest)
        n = len(ds) if max_images is None else min(len(ds), int(max_images))
        pairs = [ds.read(i) for i in range(n)]
        xs = [fitted(img) for img, _ in pairs]
        metas = [m for _, m in xs]
        inputs["images"] = np.stack([x for x, _ in xs])
    payload = _pack(artifact, manifest, script, inputs)
    remote = Remote(host, ssh_config=ssh_config, timeout=timeout)
    say(f"remote: copying {len(payload) / 1e6:.1f} MB to {host}")
    with device_folder(remote, payload, "bench", say) as where:
        folder = where["folder"]
        cmd = (f"cd {shlex.quote(folder)} && {python} runner.py --runs {int(runs)} --warmup {int(warmup)} "
               f"--threads {int(threads or 0)}")
        say(f"remote: {int(warmup)} warm-up and {int(runs)} timed runs{f', {len(pairs)} images' if pairs else ''} "
            f"on {host}")
        run = remote.run(cmd, what="the benchmark")
        out = [ln for ln in run.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
        res = json.loads(out[-1]) if out else None
        if res and res.get("error") == "missing":
            raise RemoteError(f"'{host}' has no {res['module']} for {python} ({res.get('message')}): install the "
                              f"runtime there (docs/remote.md says what each target needs)")
        if run.returncode != 0 or not res:
            tail = (run.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
            if run.returncode == 127:
                tail = f"'{python}' is not on the device: pass --remote-python"
            raise RemoteError(f"the benchmark failed on '{host}' (exit {run.returncode}): {tail}")
        maps = None
        if pairs:
            got = remote.run(f"cat {shlex.quote(folder)}/outputs.npz", what="fetching the predictions")
            if got.returncode != 0:
                raise RemoteError(f"'{host}' lost the predictions ({got.stderr.decode(errors='replace').strip()})")
            maps = np.load(io.BytesIO(got.stdout))["classes"]
    removed = where["removed"]
    acc = None
    if maps is not None:
        pre.output_kind, pre.output_size = "classes", tuple(maps.shape[1:])
        preds = iter([pre.postprocess(m, meta) for m, meta in zip(maps, metas)])
        classes = list(manifest["classes"])
        cm = score(pairs, lambda _: next(preds), len(classes), int(manifest.get("ignore_index", 255)))
        acc = cm.summary(classes)
    result = {
        "schema_version": SCHEMA_VERSION, "artifact": str(artifact), "model": (manifest.get("model") or {}).get("name"),
        "target": manifest.get("target"), "format": manifest.get("format"), "runtime": manifest.get("runtime"),
        "device": manifest.get("device"), "precision": manifest.get("precision"),
        "input_size": manifest["input"]["size"], "image": image_source,
        "remote": {"host": host, "python": python, "folder": folder, "removed": removed,
                   "note": "latency and memory measured on the device; pre/post-processing and scoring here"},
        "method": {"model_only": res.get("method"), "runs": res["runs"], "warmup": res["warmup"], "threads": threads},
        "latency_ms": res["latency_ms"], "end_to_end_ms": None,
        "peak_memory_mb": res.get("peak_memory_mb"), "size_mb": model_size_mb(artifact, manifest)[0],
        "miou": acc["miou"] if acc else None, "per_class_iou": acc["per_class_iou"] if acc else None,
        "pixel_accuracy": acc["pixel_accuracy"] if acc else None, "images": len(pairs) or None,
        "machine": res.get("machine"), "runtime_versions": res.get("runtime_versions"),
        "samples_ms": {"model": res.get("samples_ms")}, "flags": [],
    }
    # the p99 limit applies to the device's model-only p99: pre/post-processing ran here
    result["budget"] = check_budget({**result, "end_to_end_ms": result["latency_ms"]}, budget)
    return result





# ----------------------------------------------------------------------------- a device fleet

DEVICE_KEYS = {"name", "host", "targets", "python", "ssh_config", "budget", "threads"}


def load_devices(path) -> list[dict]:
    """The devices of a ``devices.yaml``: a list (or ``devices:`` list) of
    ``{name, host, targets: [...], python?, ssh_config?, threads?, budget?: {p99_ms, memory_mb}}``."""
    import yaml

    from edgeseg.errors import ConfigError
    from edgeseg.targets import list_targets

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"devices file '{path}' cannot be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}): fix it (docs/remote.md)") from None
    devices = doc.get("devices") if isinstance(doc, dict) else doc
    if not isinstance(devices, list) or not devices:
        raise ConfigError(f"devices file '{path}' holds no list of devices (docs/remote.md shows one)")
    known, names = list_targets(), set()
    for i, d in enumerate(devices):
        where = f"devices file '{path}', device {i + 1}"
        if not isinstance(d, dict) or not d.get("name") or not d.get("host"):
            raise ConfigError(f"{where}: each device needs a name and a host")
        unknown = sorted(set(d) - DEVICE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}: use {', '.join(sorted(DEVICE_KEYS))}")
        if d["name"] in names:
            raise ConfigError(f"{where}: the name '{d['name']}' is used twice")
        names.add(d["name"])
        targets = d.get("targets")
        if isinstance(targets, str):
            targets = d["targets"] = [targets]
        if not isinstance(targets, list) or not targets:
            raise ConfigError(f"{where}: 'targets' must list the targets it runs ({', '.join(known)})")
        for t in targets:
            if str(t) not in known:
                raise ConfigError(f"{where}: unknown target '{t}': targets: {', '.join(known)}")
        if d.get("ssh_config") is not None:
            cfg = Path(str(d["ssh_config"])).expanduser()
            d["ssh_config"] = str(cfg if cfg.is_absolute() else path.parent / cfg)
        if d.get("budget") is not None and not isinstance(d["budget"], dict):
            raise ConfigError(f"{where}: 'budget' must be a mapping {{p99_ms, memory_mb}}")
    return devices


def run_fleet(model, devices: list[dict], *, data=None, split: str = "val", runs: int = 100, warmup: int = 10,
              max_images: int | None = None, timeout: float = 600, workdir=None, say=lambda s: None) -> list[dict]:
    """Build each target the devices run once here, then bench every (device, target) on its
    device, the devices in parallel (one thread each); one row per pair."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from edgeseg.build import build

    ctx = tempfile.TemporaryDirectory(prefix="edgeseg-fleet-") if workdir is None else None
    root = Path(ctx.name if ctx else workdir)
    artifacts: dict[str, object] = {}
    try:
        for t in dict.fromkeys(t for d in devices for t in d["targets"]):
            say(f"build {t}")
            try:
                artifacts[t] = build(model, t, out=root / t, data=data, split=split, allow_drop=True, force=True)
            except EdgesegError as exc:
                artifacts[t] = exc

        def bench_device(d: dict) -> list[dict]:
            rows = []
            for t in d["targets"]:
                row = {"device": d["name"], "host": d["host"], "target": t}
                art = artifacts[t]
                if isinstance(art, Exception):
                    rows.append({**row, "budget": f"build failed: {art}", "result": None})
                    continue
                b = d.get("budget") or {}
                try:
                    r = bench_remote(art, d["host"], data=data, split=split, runs=runs, warmup=warmup,
                                     threads=d.get("threads"), max_images=max_images,
                                     python=d.get("python") or "python3", ssh_config=d.get("ssh_config"),
                                     timeout=timeout, budget_p99_ms=b.get("p99_ms"), budget_memory_mb=b.get("memory_mb"))
                except EdgesegError as exc:
                    rows.append({**row, "budget": f"error: {exc}", "result": None})
                    continue
                bud = r["budget"]
                rows.append({**row, "precision": r["precision"], "result": r,
                             "p50 ms": f"{r['latency_ms']['p50']:.2f}", "p99 ms": f"{r['latency_ms']['p99']:.2f}",
                             "peak MB": "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}",
                             "mIoU": "-" if r["miou"] is None else f"{r['miou']:.4f}",
                             "cpu": (r.get("machine") or {}).get("cpu"),
                             "budget": "pass" if bud["passed"] else
                             "FAIL: " + ", ".join(v["metric"] for v in bud["violations"])})
            return rows

        with ThreadPoolExecutor(max_workers=len(devices)) as pool:
            results = list(pool.map(bench_device, devices))
    finally:
        if ctx:
            ctx.cleanup()
    return [row for rows in results for row in rows]


FLEET_COLUMNS = ["device", "target", "precision", "cpu", "p50 ms", "p99 ms", "peak MB", "mIoU", "budget"]


def fleet_markdown(rows: list[dict]) -> str:
    out = ["| " + " | ".join(FLEET_COLUMNS) + " |", "|" + "---|" * len(FLEET_COLUMNS)]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in FLEET_COLUMNS) + " |" for r in rows]
    return "\n".join(out) + "\n"


def fleet_html(rows: list[dict]) -> str:
    import html

    head = "".join(f"<th>{html.escape(c)}</th>" for c in FLEET_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in FLEET_COLUMNS) + "</tr>"
                   for r in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>edgeseg bench: devices</title><style>"
            "body{font-family:sans-serif;margin:24px}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:3px 8px}</style></head><body><h1>edgeseg bench on the devices</h1>"
            f"<p>Model-only latency and peak memory measured on each device; mIoU from the class maps it "
            f"predicted.</p><table><tr>{head}</tr>{body}</table></body></html>\n")
__all__ = ["bench_remote", "Remote", "RemoteError", "load_devices", "run_fleet", "fleet_markdown", "fleet_html"]
