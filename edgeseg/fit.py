"""``edgeseg fit``: the most accurate deployment that meets a budget on a target.

A search over models (zoo names, checkpoint files) x input sizes (scales of the dataset's
native size, rounded to each model's stride) x precisions x structured-pruning ratios, on
the target's real runtime here. Cheap measurements first:

1. **build and time** every candidate (latency and peak memory, as ``edgeseg bench``
   measures them); a candidate over the budget is never scored;
2. **score** the candidates within the budget by successive halving: all of them on the
   first ``subset`` images of the split, the better half on twice as many, and so on until
   the last ones are scored on the whole split;
3. a **pruned** candidate needs fine-tuning, so it is made only where it can still win: its
   unpruned parent (same model, size, precision) is over the budget, yet more accurate than
   the best candidate within it (pruning does not make a model more accurate), and the time
   limit leaves room.

Every measurement is cached by candidate (model hash, size, precision, pruning, target,
machine, threads) under ``$EDGESEG_CACHE/fit``, so an interrupted or repeated run resumes.
The chosen candidate's artifact is copied to ``OUT/artifact`` with a ``fit`` entry in its
manifest saying how it was chosen; ``OUT/fit.json``, ``fit.md`` and ``fit.html`` hold the
whole search and its Pareto front (mIoU vs p99 vs memory).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeseg.data.holdout import holdout_of
from edgeseg.errors import ConfigError, EdgesegError

EXIT_NOTHING_FITS = 3
#: schema of fit.json and of the cached records
SCHEMA_VERSION = 1


@dataclass
class Candidate:
    model: str  # zoo name or checkpoint path
    model_hash: str
    size: tuple
    scale: float
    precision: str
    prune: float = 0.0
    key: str = ""
    status: str = "pending"  # pending | over budget | failed | measured | not measured
    why: str = ""
    p50_ms: float | None = None
    p99_ms: float | None = None
    memory_mb: float | None = None
    size_mb: float | None = None
    #: mIoU by number of images scored ({"16": 0.61, "101": 0.60})
    scores: dict = field(default_factory=dict)
    artifact: str | None = None
    checkpoint: str | None = None  # the pruned, fine-tuned checkpoint of a pruned candidate
    seconds: float = 0.0

    @property
    def label(self) -> str:
        name = Path(self.model).stem if self.model.endswith(".pt") else self.model
        prune = f" prune {self.prune:g}" if self.prune else ""
        return f"{name} {self.size[0]}x{self.size[1]} {self.precision}{prune}"

    @property
    def miou(self) -> float | None:
        """The mIoU on the most images it was scored on."""
        if not self.scores:
            return None
        return self.scores[max(self.scores, key=int)]

    @property
    def images_scored(self) -> int:
        return max((int(k) for k in self.scores), default=0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(label=self.label, miou=self.miou, images_scored=self.images_scored, size=list(self.size))
        return d


# ----------------------------------------------------------------------------- options

def parse_time_limit(text) -> float | None:
    """``"30m"`` / ``"90s"`` / ``"1.5h"`` / ``"45"`` (minutes) -> seconds; None for no limit."""
    if text is None or str(text).strip() == "":
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"--time-limit {text!r} is not a duration: use e.g. 30m, 90s or 1h")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "": 60}[m.group(2)]


def _floats(text, what: str, ok, rule: str) -> list[float]:
    vals = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            v = float(part)
        except ValueError:
            raise ConfigError(f"--{what}: {part!r} is not a number (give a comma-separated list)") from None
        if not math.isfinite(v) or not ok(v):
            raise ConfigError(f"--{what}: {v:g} is not {rule}")
        vals.append(v)
    return list(dict.fromkeys(vals))


def parse_sizes(text) -> list[float]:
    """Scales of the dataset's native size, each in (0, 1]."""
    return _floats(text, "sizes", lambda v: 0 < v <= 1, "a scale in (0, 1] of the dataset's image size")


def parse_prune(text) -> list[float]:
    """Structured-pruning ratios, each in [0, 1)."""
    return _floats(text, "prune", lambda v: 0 <= v < 1, "a fraction of channels in [0, 1)")


def _list(text) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


# ----------------------------------------------------------------------------- the cache

def cache_root() -> Path:
    from edgeseg.demo.artifacts import cache_dir

    return cache_dir() / "fit"


def candidate_key(c: Candidate, target: str, threads, machine: dict) -> str:
    ident = {"model": c.model_hash, "size": list(c.size), "precision": c.precision, "prune": c.prune,
             "target": target, "threads": threads, "cpu": machine.get("cpu"), "isa": machine.get("isa"),
             "schema": SCHEMA_VERSION, "memory": "plain runner"}  # peaks before that were edgeseg's own process
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _load_record(folder: Path) -> dict | None:
    path = folder / "record.json"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("schema") == SCHEMA_VERSION else None


def _save_record(folder: Path, c: Candidate) -> None:
    from edgeseg.files import atomic_write_text

    keep = {k: v for k, v in asdict(c).items() if k not in ("model", "scale")}
    atomic_write_text(folder / "record.json", json.dumps({"schema": SCHEMA_VERSION, **keep}, indent=1) + "\n")


def _restore(c: Candidate, rec: dict) -> None:
    for k in ("status", "why", "p50_ms", "p99_ms", "memory_mb", "size_mb", "scores", "artifact", "checkpoint",
              "seconds"):
        if k in rec:
            setattr(c, k, rec[k])
    if c.artifact and not (Path(c.artifact) / "manifest.json").is_file():
        c.artifact, c.status = None, "pending"  # the cached artifact is gone: measure again


# ----------------------------------------------------------------------------- the front

def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """The candidates no other beats on mIoU, p99 and memory at once (scored ones only)."""
    pts = [c for c in cands if c.miou is not None and c.p99_ms is not None]

    def dominates(a, b):
        ge = a.miou >= b.miou and a.p99_ms <= b.p99_ms and (a.memory_mb or 0) <= (b.memory_mb or 0)
        gt = a.miou > b.miou or a.p99_ms < b.p99_ms or (a.memory_mb or 0) < (b.memory_mb or 0)
        return ge and gt

    return sorted([c for c in pts if not any(dominates(o, c) for o in pts if o is not c)], key=lambda c: c.p99_ms)


def misses(c: Candidate, budget) -> list[tuple[str, float, float, float]]:
    """(metric, value, limit, over by) for every limit ``c`` misses."""
    out = []
    for metric, value, limit, worse in (("p99", c.p99_ms, budget.p99_ms, 1), ("memory", c.memory_mb, budget.memory_mb, 1),
                                        ("mIoU", c.miou, budget.min_miou, -1)):
        if limit is None or value is None:
            continue
        over = (value - limit) * worse
        if over > 0:
            out.append((metric, value, limit, over))
    return out


def closest(cands: list[Candidate], budget) -> Candidate | None:
    """The measured candidate whose worst relative miss is smallest."""
    measured = [c for c in cands if c.p99_ms is not None]
    if not measured:
        return None
    return min(measured, key=lambda c: max((over / limit for _, _, limit, over in misses(c, budget)), default=0.0))


# ----------------------------------------------------------------------------- the search

class Search:
    def __init__(self, target: str, data, budget, *, split: str, runs: int, warmup: int, threads, memory_runs: int,
                 subset: int, calib_images: int, deadline: float | None, prune_epochs: float, say):
        self.target, self.data, self.budget, self.split = target, data, budget, split
        self.runs, self.warmup, self.threads, self.memory_runs = runs, warmup, threads, memory_runs
        self.subset, self.calib_images, self.deadline, self.prune_epochs = subset, calib_images, deadline, prune_epochs
        self.say = say
        self.pairs_cache: list = []

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    # -- step 1: build and time

    def measure(self, c: Candidate, folder: Path, source) -> None:
        from edgeseg.bench.latency import encode_image, measure_latency
        from edgeseg.bench.memory import measure_peak_memory
        from edgeseg.build import build
        from edgeseg.formats import load_predictor

        t0 = time.perf_counter()
        art = folder / "artifact"
        if art.exists():
            shutil.rmtree(art)
        try:
            build(source, self.target, precision=c.precision, out=art, data=self.data, split=self.split,
                  calib_images=self.calib_images, input_size=c.size, allow_drop=True, parity_images=2,
                  threads=self.threads)
        except EdgesegError as exc:
            c.status, c.why = "failed", f"build failed: {exc}"
            return
        from edgeseg.bench.core import model_size_mb
        from edgeseg.formats import read_manifest

        c.artifact = str(art)
        c.size_mb = model_size_mb(art, read_manifest(art))[0]
        pred = load_predictor(art, threads=self.threads)
        lat = measure_latency(pred, encode_image(self.image()), runs=self.runs, warmup=self.warmup)
        del pred
        c.p50_ms, c.p99_ms = lat["end_to_end_ms"]["p50"], lat["end_to_end_ms"]["p99"]
        if self.memory_runs:
            c.memory_mb = measure_peak_memory(art, runs=self.memory_runs, threads=self.threads)["peak_mb"]
        c.status = "measured"  # fit() judges it against the budget
        c.seconds += time.perf_counter() - t0

    # -- step 2: score

    def pairs(self, n: int) -> list:
        from edgeseg.data.holdout import open_split

        if len(self.pairs_cache) < n:
            ds = open_split(self.data, self.split)
            self.pairs_cache = [ds.read(i) for i in range(min(n, len(ds)))]
        return self.pairs_cache[:n]

    def split_size(self) -> int:
        from edgeseg.data.holdout import open_split

        ds = open_split(self.data, self.split)
        if ds is None or len(ds) == 0:
            raise ConfigError(f"dataset '{self.data}' has no '{self.split}' images to score on: pass --split")
        return len(ds)

    def image(self):
        return self.pairs(1)[0][0]

    def score(self, c: Candidate, n: int) -> None:
        from edgeseg.bench.accuracy import evaluate
        from edgeseg.formats import load_predictor, read_manifest

        if str(n) in c.scores:
            return
        t0 = time.perf_counter()
        m = read_manifest(c.artifact)
        pred = load_predictor(c.artifact, threads=self.threads)
        pairs = self.pairs(n)
        s = evaluate(pred, pairs, len(m["classes"]), int(m.get("ignore_index", 255)), m["classes"], images=pairs,
                     max_images=len(pairs))
        c.scores[str(len(pairs))] = s["miou"]
        c.seconds += time.perf_counter() - t0


def _model_sources(models, profile) -> list[str]:
    from edgeseg import zoo

    if models:
        return _list(models)
    cards = zoo.read_cards()
    return sorted(n for n, c in cards.items() if not c.get("compression"))


def _model_hash(source: str) -> tuple[str, object]:
    """(sha256 of the checkpoint file, the loaded model) for a zoo name or a checkpoint path."""
    from edgeseg import zoo
    from edgeseg.checkpoints import load_model
    from edgeseg.files import file_sha256

    model, info, ckpt = load_model(source)
    path = zoo.zoo_checkpoint_path(source) if zoo.is_zoo_name(source) else Path(source)
    digest = file_sha256(path)
    if ckpt.get("onnx"):  # the same file adapted otherwise (output, channel order, normalisation) is another model
        how = json.dumps([ckpt["model"]["kwargs"], ckpt["dataset"].get("mean"), ckpt["dataset"].get("std")],
                         sort_keys=True)
        digest = hashlib.sha256((digest + how).encode()).hexdigest()
    return digest, (model, info, ckpt)


def _pruned_checkpoint(parent: str, ratio: float, folder: Path, data, size, epochs: float, say) -> Path:
    """Structured pruning of ``parent`` by ``ratio``, fine-tuned on ``data``'s train split."""
    import copy

    import torch

    from edgeseg.checkpoints import load_model
    from edgeseg.compress.common import Data, bn_batches, finetune, recalibrate_bn
    from edgeseg.compress.io import save_compressed
    from edgeseg.compress.prune import prune_structured

    model, info, ckpt = load_model(parent)
    if ckpt.get("quantization") or ckpt.get("pruning"):
        raise ConfigError(f"--prune: '{parent}' is already compressed: give its float checkpoint")
    from edgeseg.build import resolve_input_size

    train_size = resolve_input_size(model, ckpt)
    d = Data(data, info, model.size_divisor, calib_images=8,
             train_scale=(ckpt.get("config") or {}).get("scale") or (0.5, 2.0))
    pm = copy.deepcopy(model)
    det = prune_structured(pm, torch.zeros(1, 3, *size), ratio)
    recalibrate_bn(pm, bn_batches(d, train_size))
    loss = str((ckpt.get("config") or {}).get("loss") or "ce")
    rec = finetune(pm, d, img_size=train_size, epochs=epochs, lr=1e-4, batch_size=4, log=say, loss=loss)
    recalibrate_bn(pm, bn_batches(d, train_size))
    path = folder / "pruned.pt"
    save_compressed(pm, info, train_size, path, pruning={**det, "finetune": rec, "source": str(parent)})
    return path


def fit(target: str, data, *, budget_p99_ms=None, budget_memory_mb=None, min_miou=None, models=None,
        sizes="1.0,0.75,0.5", precisions=None, prune="0", time_limit=None, out="fit", split: str = "val",
        runs: int = 50, warmup: int = 5, threads: int | None = None, memory_runs: int = 3, subset: int = 16,
        calib_images: int = 32, prune_epochs: float = 1.0, force: bool = False, say=lambda s: None) -> dict:
    """Run the search; the result dict (also written to ``out/fit.json``). ``result["chosen"]`` is
    None when nothing meets the budget (the CLI exits 3 then)."""
    from edgeseg.bench.budget import resolve_budget
    from edgeseg.machine import machine_info
    from edgeseg.sizes import nearest_valid_size
    from edgeseg.targets import load_target, precision_available, runtime_available

    t_start = time.monotonic()
    profile = load_target(target)
    ok, why = runtime_available(profile)
    if not ok:
        raise ConfigError(f"fit measures every candidate on {target}'s own runtime, which cannot run here ({why}): "
                          f"run fit on the device itself (a remote bench is planned), not on invented latencies")
    budget = resolve_budget(target, p99_ms=budget_p99_ms, memory_mb=budget_memory_mb, min_miou=min_miou)
    if budget.p99_ms is None and budget.memory_mb is None:
        raise ConfigError("give a budget: --budget-p99-ms and/or --budget-memory-mb (the target profile has none)")
    deadline = t_start + parse_time_limit(time_limit) if time_limit is not None else None
    scales, ratios = parse_sizes(sizes), parse_prune(prune)
    precs = _list(precisions) if precisions else list(profile.precisions)
    for p in precs:
        profile.check_precision(p)
    precs = [p for p in precs if precision_available(profile, p)[0]]
    if not precs:
        raise ConfigError(f"none of the precisions asked for runs on this machine for {target}")
    for name, v in (("runs", runs), ("subset", subset), ("calib-images", calib_images)):
        if int(v) < 1:
            raise ConfigError(f"--{name} must be at least 1, got {v}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"output folder '{out}' exists and is not empty: choose another --out or pass --force")

    machine = machine_info(threads)
    search = Search(target, data, budget, split=split, runs=int(runs), warmup=int(warmup), threads=threads,
                    memory_runs=int(memory_runs), subset=int(subset), calib_images=int(calib_images),
                    deadline=deadline, prune_epochs=float(prune_epochs), say=say)
    n_split = search.split_size()
    native = search.image().shape[:2]

    # the candidates: models x sizes x precisions (pruned ones are added in step 3)
    cands, sources = [], {}
    for source in _model_sources(models, profile):
        digest, (model, info, ckpt) = _model_hash(source)
        if trained_on(ckpt, split):
            why = (f"'{source}' trained on the '{split}' images (its training split was "
                   f"{holdout_of(ckpt)['from']}, less a hold-out): fit would score it on its own training images")
            if models:
                raise ConfigError(f"{why}; pass a split it did not train on with --split, or leave it out")
            say(f"fit: leaving out {why}")
            continue
        if info.num_classes != len(open_classes(data, split)):
            raise ConfigError(f"model '{source}' has {info.num_classes} classes but '{data}' has "
                              f"{len(open_classes(data, split))}: give models trained on this label set")
        seen = set()
        for s in scales:
            size = tuple(nearest_valid_size(round(native[i] * s), model.size_divisor, model.min_size) for i in (0, 1))
            for p in precs:
                if (size, p) in seen:
                    continue
                seen.add((size, p))
                c = Candidate(source, digest, size, s, p)
                c.key = candidate_key(c, target, threads, machine)
                cands.append(c)
                sources[c.key] = source
    root = cache_root()
    say(f"fit: {len(cands)} candidates for {target} on {data} ({n_split} '{split}' images); budget "
        f"p99 {budget.p99_ms} ms, memory {budget.memory_mb} MB, min mIoU {budget.min_miou}; cache {root}")

    def best_feasible() -> Candidate | None:
        """The most accurate candidate within the budget among those scored on the most images
        (a score on a few images is not compared with one on the whole split)."""
        scored = [c for c in cands if c.status == "measured" and c.miou is not None]
        if not scored:
            return None
        most = max(c.images_scored for c in scored)
        top = max((c for c in scored if c.images_scored == most), key=lambda c: (c.miou, -c.p99_ms))
        return top if budget.min_miou is None or top.miou >= budget.min_miou else None

    def judge(c: Candidate) -> None:
        if c.status in ("measured", "over budget"):
            over = [m for m in misses(c, budget) if m[0] != "mIoU"]
            c.status = "over budget" if over else "measured"
            c.why = "; ".join(f"{m} {v:.1f} over {lim:g} by {o:.1f}" for m, v, lim, o in over)

    def step_measure(c: Candidate, source) -> None:
        folder = root / c.key
        rec = _load_record(folder)
        if rec:
            _restore(c, rec)
            judge(c)  # the cache holds measurements; the verdict is this run's budget's
        if c.status != "pending":
            say(f"  {c.label}: cached ({c.status}{', ' + c.why if c.why else ''})")
            return
        if search.out_of_time():
            c.status, c.why = "not measured", "time limit"
            return
        folder.mkdir(parents=True, exist_ok=True)
        search.measure(c, folder, source)
        judge(c)
        _save_record(folder, c)
        say(f"  {c.label}: p99 {_f(c.p99_ms)} ms, memory {_f(c.memory_mb)} MB: {c.status}"
            f"{' (' + c.why + ')' if c.why else ''}")

    from edgeseg.progress import track

    # step 1: build and time every candidate
    for c in track(cands, "fit: latency and memory"):
        step_measure(c, sources[c.key])

    # step 2: successive halving over those within the budget
    def halving(pool: list[Candidate]) -> None:
        n = min(int(subset), n_split)
        while pool:
            for c in track(pool, f"fit: mIoU on {n} images"):
                if search.out_of_time() and str(n) not in c.scores:
                    continue
                search.score(c, n)
                _save_record(root / c.key, c)
            pool = sorted([c for c in pool if str(n) in c.scores], key=lambda c: -c.scores[str(n)])
            if n >= n_split or len(pool) <= 1:
                if pool and n < n_split and not search.out_of_time():  # the winner is scored on the whole split
                    search.score(pool[0], n_split)
                    _save_record(root / pool[0].key, pool[0])
                break
            pool = pool[: max(1, math.ceil(len(pool) / 2))]
            n = min(2 * n, n_split)
            best = pool[0]
            say(f"  {len(pool)} left after {best.images_scored} images; best so far {best.label} "
                f"(mIoU {best.scores[max(best.scores, key=int)]:.4f})")

    halving([c for c in cands if c.status == "measured"])

    # step 3: pruned candidates, only where they can still win
    if any(r > 0 for r in ratios):
        best = best_feasible()
        parents = [c for c in cands if c.status == "over budget" and c.prune == 0]
        for parent in parents:
            if parent.miou is None and parent.artifact:  # how good could it be? its own mIoU bounds the pruned one
                search.score(parent, min(int(subset), n_split))
                _save_record(root / parent.key, parent)
            if parent.miou is None or (best is not None and parent.miou <= best.miou):
                continue
            for r in (r for r in ratios if r > 0):
                if search.out_of_time():
                    break
                c = Candidate(parent.model, parent.model_hash, parent.size, parent.scale, parent.precision, r)
                c.key = candidate_key(c, target, threads, machine)
                cands.append(c)
                folder = root / c.key
                rec = _load_record(folder)
                if rec:
                    _restore(c, rec)
                    judge(c)
                if c.status == "pending":
                    folder.mkdir(parents=True, exist_ok=True)
                    say(f"  pruning {parent.label} by {r:g} and fine-tuning ({prune_epochs:g} epoch) ...")
                    try:
                        c.checkpoint = str(_pruned_checkpoint(parent.model, r, folder, data, parent.size,
                                                              float(prune_epochs), lambda s: None))
                    except EdgesegError as exc:
                        c.status, c.why = "failed", f"pruning failed: {exc}"
                        _save_record(folder, c)
                        continue
                    search.measure(c, folder, c.checkpoint)
                    judge(c)
                    _save_record(folder, c)
                if c.status == "measured":
                    halving([c] + ([best] if best is not None else []))
                best = best_feasible()

    chosen = best_feasible()
    result = {
        "schema_version": SCHEMA_VERSION, "target": target, "data": str(data), "split": split, "images": n_split,
        "budget": budget.to_dict(), "machine": machine, "threads": threads,
        "search": {"models": _model_sources(models, profile), "sizes": scales, "precisions": precs, "prune": ratios,
                   "subset": int(subset), "runs": int(runs), "memory_runs": int(memory_runs),
                   "time_limit_s": parse_time_limit(time_limit) if time_limit is not None else None},
        "candidates": [c.to_dict() for c in cands],
        "front": [c.key for c in pareto_front(cands)],
        "chosen": chosen.to_dict() if chosen else None,
        "closest": None,
        "seconds": round(time.monotonic() - t_start, 1),
    }
    if chosen is None:
        near = closest(cands, budget)
        if near is not None:
            result["closest"] = {**near.to_dict(), "misses": [
                {"metric": m, "value": v, "limit": lim, "over_by": o, "over_by_pct": 100 * o / lim}
                for m, v, lim, o in misses(near, budget)]}
    _write_outputs(out, result, chosen, force)
    return result


def trained_on(ckpt: dict, split: str) -> bool:
    """Whether a checkpoint's training read the dataset's own ``split`` (a run on train+val
    with a hold-out in place of val): scoring it there would flatter it."""
    h = holdout_of(ckpt)
    return bool(h and h.get("forced") and split in h["from"].split("+"))


def open_classes(data, split: str) -> list:
    from edgeseg.data.holdout import open_split

    ds = open_split(data, split)
    if ds is None:
        raise ConfigError(f"dataset '{data}' has no '{split}' split: pass --split")
    return list(ds.info.classes)


def _f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


# ----------------------------------------------------------------------------- reports

def table_rows(result: dict) -> list[dict]:
    front = set(result["front"])
    chosen = (result.get("chosen") or {}).get("key")
    rows = []
    for c in sorted(result["candidates"], key=lambda c: (c["p99_ms"] is None, c["p99_ms"] or 0)):
        rows.append({"candidate": c["label"], "p50 ms": _f(c["p50_ms"]), "p99 ms": _f(c["p99_ms"]),
                     "peak MB": _f(c["memory_mb"], "{:.0f}"), "size MB": _f(c["size_mb"], "{:.2f}"),
                     "mIoU": _f(c["miou"], "{:.4f}"), "images": c["images_scored"] or "-",
                     "status": ("CHOSEN" if c["key"] == chosen else c["status"]) + (", front" if c["key"] in front
                                                                                    else ""),
                     "why": c["why"]})
    return rows


def to_markdown(result: dict) -> str:
    b = result["budget"]
    lines = [f"# edgeseg fit: {result['target']}", "",
             f"Budget: p99 {b['p99_ms']} ms end to end, peak memory {b['memory_mb']} MB, min mIoU {b['min_miou']}; "
             f"data {result['data']} ({result['images']} '{result['split']}' images); "
             f"{result['machine']['cpu']}, threads {result['threads'] or 'default'}; {result['seconds']} s.", ""]
    rows = table_rows(result)
    keys = list(rows[0]) if rows else []
    lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    lines.append("")
    if result.get("chosen"):
        c = result["chosen"]
        lines.append(f"Chosen: **{c['label']}**, mIoU {c['miou']:.4f} on {c['images_scored']} images, "
                     f"p99 {c['p99_ms']:.2f} ms, peak {_f(c['memory_mb'], '{:.0f}')} MB (artifact: `artifact/`).")
    else:
        lines.append("Nothing meets the budget. " + closest_line(result))
    return "\n".join(lines) + "\n"


def closest_line(result: dict) -> str:
    near = result.get("closest")
    if not near:
        return "No candidate could be measured."
    unit = {"p99": " ms", "memory": " MB"}
    misses_ = "; ".join(f"{m['metric']} {m['value']:.2f}{unit[m['metric']]}, over the limit {m['limit']:g} by "
                        f"{m['over_by']:.2f}{unit[m['metric']]} ({m['over_by_pct']:.0f}%)" if m["metric"] != "mIoU" else
                        f"mIoU {m['value']:.4f} under {m['limit']:g} by {m['over_by']:.4f}" for m in near["misses"])
    return f"Closest: {near['label']} ({misses_ or 'not scored within the time limit'})."


def svg_front(result: dict) -> str:
    """mIoU against p99 for every scored candidate, the budget shaded and the front joined."""
    from edgeseg.bench.report import svg_accuracy_latency

    scored = [c for c in result["candidates"] if c["miou"] is not None and c["p99_ms"] is not None]
    if not scored:
        return "<p>No candidate was scored: nothing to plot.</p>"
    limits = {"p99_ms": result["budget"]["p99_ms"], "min_miou": result["budget"]["min_miou"]}
    front = set(result["front"])  # only the front is labelled: the rest would crowd it
    pts = [{"label": c["label"] if c["key"] in front else "", "end_to_end_ms": {"p99": c["p99_ms"]}, "miou": c["miou"],
            "budget": {"limits": limits}, "front": c["key"] in front} for c in scored]
    return svg_accuracy_latency(pts, w=720, h=420, front=True)


def to_html(result: dict) -> str:
    import html

    rows = table_rows(result)
    keys = list(rows[0]) if rows else []
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in keys) + "</tr>" for r in rows)
    b = result["budget"]
    chosen = result.get("chosen")
    verdict = (f"Chosen: <b>{html.escape(chosen['label'])}</b>, mIoU {chosen['miou']:.4f}, p99 "
               f"{chosen['p99_ms']:.2f} ms" if chosen else html.escape("Nothing meets the budget. " +
                                                                         closest_line(result)))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>edgeseg fit</title><style>"
            "body{font-family:sans-serif;margin:24px}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:3px 8px;font-size:13px}</style></head><body>"
            f"<h1>edgeseg fit: {html.escape(result['target'])}</h1>"
            f"<p>Budget: p99 {b['p99_ms']} ms, memory {b['memory_mb']} MB, min mIoU {b['min_miou']}; "
            f"{result['images']} '{html.escape(result['split'])}' images of {html.escape(result['data'])}; "
            f"{html.escape(result['machine']['cpu'])}; {result['seconds']} s.</p><p>{verdict}</p>"
            f"{svg_front(result)}<table><tr>{head}</tr>{body}</table></body></html>\n")


def _write_outputs(out: Path, result: dict, chosen: Candidate | None, force: bool) -> None:
    from edgeseg.files import atomic_write_text, staged_folder
    from edgeseg.formats import read_manifest
    from edgeseg.formats.manifest import write_manifest

    with staged_folder(out, replace=force, label="fit") as tmp:
        if chosen is not None:
            shutil.copytree(chosen.artifact, tmp / "artifact")
            m = read_manifest(tmp / "artifact")
            m["fit"] = {"chosen_by": "edgeseg fit: the highest mIoU among the candidates within the budget",
                        "budget": result["budget"], "candidates": len(result["candidates"]),
                        "on_front": chosen.key in result["front"], "miou": chosen.miou,
                        "images_scored": chosen.images_scored, "p99_ms": chosen.p99_ms,
                        "memory_mb": chosen.memory_mb, "report": "../fit.json"}
            write_manifest(tmp / "artifact", m)
            result["artifact"] = str(out / "artifact")
        atomic_write_text(tmp / "fit.json", json.dumps(result, indent=1, default=str) + "\n")
        atomic_write_text(tmp / "fit.md", to_markdown(result))
        atomic_write_text(tmp / "fit.html", to_html(result))


__all__ = ["fit", "Candidate", "pareto_front", "closest", "misses", "parse_time_limit", "parse_sizes", "parse_prune",
           "to_markdown", "to_html", "table_rows", "EXIT_NOTHING_FITS"]
