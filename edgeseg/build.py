"""``edgeseg build``: a checkpoint -> a verified artifact folder for one target.

Flow: load the model and the target profile, check the precision and input size, gather
calibration images, export in a temporary folder beside ``out`` (one module per format,
chosen by the profile), write ``manifest.json``, run the artifact in its real runtime and
compare it with the PyTorch fp32 model (``parity.json``), then rename the folder to
``out``. A failed step or parity check leaves nothing at ``out`` and no temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeseg.formats.manifest import make_manifest, write_manifest

# ---------------------------------------------------------------------------------------
# the build

import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from edgeseg.errors import ConfigError, EdgesegError  # noqa: E402
from edgeseg.sizes import parse_size  # noqa: E402

log = logging.getLogger("edgeseg.build")

DEFAULT_CALIB = {"split": "train", "images": 32, "selection": "first", "seed": 0}
REPO_CALIB = Path(__file__).resolve().parents[1] / "calib" / "default.yaml"


def load_calib_definition(path=None) -> dict:
    """A calibration-set definition (calib/*.yaml): split, images, selection, seed."""
    import yaml

    d = dict(DEFAULT_CALIB)
    src = Path(path) if path else (REPO_CALIB if REPO_CALIB.is_file() else None)
    if src is not None:
        if not src.is_file():
            raise ConfigError(f"calibration definition '{src}' does not exist: give a YAML file like calib/default.yaml")
        try:
            loaded = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"calibration definition '{src}' is not valid YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"calibration definition '{src}' must be a mapping (split, images, selection, seed)")
        unknown = set(loaded) - set(DEFAULT_CALIB)
        if unknown:
            raise ConfigError(f"calibration definition '{src}': unknown key(s) {', '.join(sorted(unknown))}: "
                              f"use {', '.join(DEFAULT_CALIB)}")
        d.update(loaded)
    if d["selection"] not in ("first", "random"):
        raise ConfigError(f"calibration selection must be 'first' or 'random', got {d['selection']!r}")
    if not isinstance(d["images"], int) or d["images"] < 1:
        raise ConfigError(f"calibration images must be a positive integer, got {d['images']!r}")
    d["file"] = str(src) if src else None
    return d


def _pick(n_total: int, n: int, selection: str, seed: int) -> list[int]:
    n = min(n, n_total)
    if selection == "random":
        return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())
    return list(range(n))


def resolve_input_size(model, ckpt: dict, input_size=None) -> tuple[int, int]:
    if input_size is not None:
        h, w = parse_size(input_size)
        model.check_input_size(h, w)  # InputSizeError naming the nearest valid sizes
        return h, w
    size = ckpt.get("input_size")
    if not size:
        raise ConfigError("the checkpoint records no input size and the target needs a static one: pass --img-size HxW")
    return model.valid_size(int(size[0])), model.valid_size(int(size[1]))


def _source_entry(source, ckpt: dict) -> dict:
    from edgeseg.train.checkpoint import file_sha256

    zoo_name = ckpt.get("zoo")
    path = Path(source)
    if zoo_name:
        from edgeseg import zoo

        path = zoo.zoo_checkpoint_path(zoo_name)
    entry = {"path": str(path.resolve()) if path.is_file() else str(source), "zoo": zoo_name,
             "sha256": file_sha256(path) if path.is_file() else None,
             "input_size": ckpt.get("input_size")}
    for key in ("epoch", "metrics", "best_miou"):
        if key in ckpt and isinstance(ckpt[key], (int, float, str, dict)):
            entry[key] = ckpt[key]
    from edgeseg.data.holdout import holdout_of

    if holdout := holdout_of(ckpt):  # so bench scores the images training held out
        entry["holdout"] = holdout
    return entry


def synthetic_images(n: int, size, seed: int = 0) -> list[np.ndarray]:
    """Deterministic smooth RGB images (blobs of colour) for a parity check without data."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        noise = rng.integers(-8, 9, size=img.shape)
        out.append(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return out


def _open(data, split: str, holdout: dict | None = None):
    """``split`` of ``data`` (the checkpoint's held-out images for a dataset without it), or None."""
    from edgeseg.data.holdout import open_split

    return open_split(data, split, holdout)


def _prediction_run(predictor, images, masks, num_classes, ignore_index, ref=None):
    """Class maps, raw outputs and mIoU of ``predictor`` over ``images``."""
    from edgeseg.metrics import score

    preds, raws = [], []

    def predict(img):
        x, meta = predictor.preprocess(img)
        raws.append(predictor.infer(x))
        preds.append(predictor.postprocess(raws[-1], meta))
        return preds[-1]

    pairs = list(zip(images, masks if masks is not None else [None] * len(images)))
    cm = score(pairs, predict, num_classes, ignore_index, label=f"parity: {predictor.runtime}")
    return preds, raws, (cm.compute()["miou"] if masks is not None else None)


def _as_nchw_logits(pred, y):
    """The raw output as float NCHW logits (dequantised), or None for class outputs."""
    from edgeseg.formats.predictor import dequantize

    if pred.output_kind != "logits":
        return None
    y = np.asarray(y)
    if pred.output_quant and y.dtype.kind in "iu":
        y = dequantize(y, pred.output_quant)
    y = y.astype(np.float32)
    if pred.output_layout == "NHWC":
        y = y.transpose(0, 3, 1, 2)
    return y


def check_parity(artifact_dir, model, info, input_size, profile, precision, *, images, masks, image_source: str,
                 threads=None, reference: str = "pytorch fp32") -> dict:
    """Run the artifact in its runtime (or a stated proxy) and compare with ``model`` in PyTorch
    (fp32, or the checkpoint's fake-quantized model for a QAT checkpoint; ``reference`` says which)."""
    from edgeseg.formats import get_unit, load_predictor
    from edgeseg.reference import TorchPredictor

    unit = get_unit(profile.runtime)
    ok, why = unit.available(profile)
    runtime, device, proxy = None, None, None
    if not ok:
        found = unit.parity_proxy(profile, why, read_files_model(artifact_dir))
        if not found or isinstance(found, str):  # none, or the reason the proxy cannot run either
            return {"ran": False, "reason": found or why}
        runtime, device, proxy = found.runtime, found.device, found.note
    t0 = time.perf_counter()
    pred = load_predictor(artifact_dir, threads=threads, device=device, runtime=runtime)
    ref = TorchPredictor.from_model(model, info, input_size, threads=threads)
    ref_cls, ref_raw, ref_miou = _prediction_run(ref, images, masks, info.num_classes, info.ignore_index)
    art_cls, art_raw, art_miou = _prediction_run(pred, images, masks, info.num_classes, info.ignore_index)
    same = sum(int((a == b).sum()) for a, b in zip(ref_cls, art_cls))
    total = sum(a.size for a in ref_cls)
    agreement = same / max(1, total)
    max_diff = None
    diffs = [(_as_nchw_logits(ref, r), _as_nchw_logits(pred, a)) for r, a in zip(ref_raw, art_raw)]
    if all(a is not None and b is not None and a.shape == b.shape for a, b in diffs):
        max_diff = float(max(np.abs(a - b).max() for a, b in diffs))
    min_agree = profile.min_agreement(precision)
    max_drop = profile.max_miou_drop(precision)
    drop = None if ref_miou is None or art_miou is None else float(ref_miou - art_miou)
    ref_flags, art_flags = _flags(ref_cls, masks, info), _flags(art_cls, masks, info)
    failures = [f"the artifact degenerates where the source does not: {f}"
                for f in _new_flags(ref_flags, art_flags, info)]
    if agreement < min_agree:
        failures.append(f"pixel agreement {agreement:.4f} < {min_agree} (target '{profile.name}', {precision})")
    if drop is not None and drop > max_drop:
        failures.append(f"mIoU drop {drop:.4f} > {max_drop} ({ref_miou:.4f} -> {art_miou:.4f})")
    from edgeseg.machine import cpu_isa, cpu_model

    # what really ran (OpenVINO reports its inference precision) and on which CPU
    execution = {**pred.execution(), "cpu": cpu_model(), "isa": cpu_isa()["isa"]}
    return {
        "ran": True, "runtime": pred.runtime, "device": device or pred.device, "proxy": proxy,
        "execution": execution,
        "reference": reference, "images": len(images), "image_source": image_source,
        "agreement": agreement, "min_agreement": min_agree, "max_abs_logit_diff": max_diff,
        "miou_reference": ref_miou, "miou_artifact": art_miou, "miou_drop": drop, "max_miou_drop": max_drop,
        "flags": {"reference": [f["message"] for f in ref_flags[0]], "artifact": [f["message"] for f in art_flags[0]]},
        "passed": not failures, "failures": failures, "seconds": round(time.perf_counter() - t0, 3),
    }


def _flags(class_maps, masks, info) -> tuple[list[dict], dict]:
    """Degenerate-output flags of a parity run, and the pixel counts they came from."""
    from edgeseg.metrics import class_map_counts, output_flags

    c = class_map_counts(class_maps, masks, num_classes=info.num_classes, ignore_index=info.ignore_index)
    return output_flags(c["predicted"], c["truth"], class_names=info.classes, images=c["images"],
                        single_class_images=c["single_class_images"]), c


def _new_flags(ref: tuple[list[dict], dict], art: tuple[list[dict], dict], info) -> list[str]:
    """Messages of the artifact's degenerate outputs that the source does not have.

    A collapsed class counts only where the source still finds it (metrics.classes_lost), so a
    class the source itself barely predicts does not fail the build.
    """
    from edgeseg.metrics import STRUCTURAL_FLAGS, classes_lost

    (ref_flags, ref_counts), (art_flags, _) = ref, art
    ref_kinds = {f["kind"] for f in ref_flags}
    names = [str(n) for n in info.classes]
    out = []
    for f in art_flags:
        if f["kind"] in STRUCTURAL_FLAGS and not ref_kinds & set(STRUCTURAL_FLAGS):
            out.append(f["message"])
        elif f["kind"] == "collapsed" and ref_counts["truth"] is not None:
            predicted = dict(zip(names, ref_counts["predicted"].tolist()))
            if classes_lost(f["classes"], predicted, dict(zip(names, ref_counts["truth"].tolist()))):
                out.append(f["message"])
    return out


def read_files_model(artifact_dir) -> str:
    from edgeseg.formats.predictor import read_manifest

    return read_manifest(artifact_dir)["files"]["model"]


def default_out(source, ckpt: dict, target: str, precision: str) -> Path:
    stem = ckpt.get("zoo") or Path(str(source)).stem
    return Path("artifacts") / f"{stem}-{target}-{precision}"


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output '{out}' exists and is not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"output folder '{out}' exists and is not empty: pass --force to replace it or choose another --out")


@dataclass
class BuildPlan:
    """What a build will do, decided before any file is written (:func:`plan_build`)."""

    source: str
    profile: object  # TargetProfile
    unit: object  # FormatUnit
    precision: str
    model: object  # the checkpoint's model (the parity reference)
    export_model: object  # what the unit exports (the float weights of an NNCF checkpoint it re-quantizes)
    info: object  # DatasetInfo
    ckpt: dict
    size: tuple
    out: Path
    #: the checkpoint's quantization entry (edgeseg compress --ptq / --qat), or None
    quantized: dict | None
    #: the unit exports that quantization as it is (else it calibrates its own, or needs none)
    keeps_quantization: bool
    #: int8 layers left in float (--keep-float NAME,NAME, or those --keep-float auto chose)
    keep_float: list
    #: --keep-float auto: keep the layers adding most error in float until parity passes
    keep_float_auto: bool = False

    @property
    def needs_calibration(self) -> bool:
        return self.precision == "int8" and not self.keeps_quantization

    @property
    def reference(self) -> str:
        if getattr(self.model, "graph_bytes", None) is not None:
            return "onnxruntime fp32, the source ONNX file"
        if not self.quantized:
            return "pytorch fp32"
        backend = "PT2E" if self.quantized.get("backend") == "pt2e" else "NNCF"
        return f"pytorch, the checkpoint's {backend} fake-quantized int8 model"


def _keep_float_plan(keep_float: str | None, unit, profile, precision: str, keeps: bool) -> tuple[list, bool]:
    """``(names, auto)`` from --keep-float; one line where it cannot apply."""
    if not keep_float:
        return [], False
    if precision != "int8" or keeps:
        raise ConfigError("--keep-float leaves layers of an int8 build in float: use it with --precision int8 "
                          "(and a float checkpoint, which the build quantizes)")
    if not unit.keeps_layers_float:
        from edgeseg.formats import get_unit
        from edgeseg.targets import list_targets, load_target

        able = [t for t in list_targets() if get_unit(load_target(t).runtime).keeps_layers_float]
        raise ConfigError(f"--keep-float is not available for target '{profile.name}' yet: it works for "
                          f"{', '.join(able)}")
    if keep_float.strip() == "auto":
        return [], True
    return [n.strip() for n in keep_float.split(",") if n.strip()], False


def plan_build(source, target: str, *, precision=None, out=None, input_size=None, force: bool = False,
               keep_float: str | None = None, say=lambda s: None) -> BuildPlan:
    """Step 1: the target, the precision, the model to export and where it goes; every check that
    needs no data runs here, so a wrong argument fails before any minute is spent."""
    from edgeseg.checkpoints import float_model, load_model
    from edgeseg.formats import get_unit
    from edgeseg.targets import list_targets, load_target

    profile = load_target(target)
    requested = precision
    precision = profile.check_precision(precision)
    model, info, ckpt = load_model(source)
    model = model.float().eval().cpu()
    unit = get_unit(profile.runtime)
    if getattr(model, "graph_bytes", None) is not None and not unit.takes_onnx_models:
        raise ConfigError(f"target '{profile.name}' ({profile.format}) converts from PyTorch only, and '{source}' is "
                          f"an ONNX file: start from the PyTorch model (a checkpoint, or train --model "
                          f"FILE.py:FACTORY), or build this file for another target")
    # A quantized checkpoint (edgeseg compress --qat/--ptq) is int8 by construction.
    quantized = ckpt.get("quantization") or None
    if quantized and precision != "int8":
        if requested is not None or "int8" not in profile.precisions:
            raise ConfigError(f"'{source}' is an int8-quantized checkpoint (edgeseg compress, "
                              f"{quantized.get('method')}): build it with --precision int8 for a target that has "
                              f"int8, or build its float source checkpoint for {precision}")
        precision = "int8"
    backend = (quantized or {}).get("backend", "nncf")
    keeps = bool(quantized) and backend in unit.quantized_checkpoints
    export_model = model
    if quantized and not keeps:
        if backend != "nncf":  # only NNCF's quantizers can be dropped for the float weights
            takes = [t for t in list_targets() if backend in get_unit(load_target(t).runtime).quantized_checkpoints]
            raise ConfigError(f"'{source}' was quantized with {backend} (edgeseg compress) for another runtime: "
                              f"build it with --target {' or '.join(takes) or '(none here)'}, or compress the fp32 "
                              f"checkpoint for '{profile.name}'")
        export_model, _ = float_model(ckpt, str(source))
        export_model = export_model.float().eval().cpu()
        say(f"note: the {profile.format} exporter cannot take NNCF's quantizers: it re-quantizes the checkpoint's "
            f"QAT-trained weights with its own calibration; parity compares with the QAT model")
    names, auto = _keep_float_plan(keep_float, unit, profile, precision, keeps)
    size = resolve_input_size(model, ckpt, input_size)
    out = Path(out) if out is not None else default_out(source, ckpt, profile.name, precision)
    _check_out(out, force)
    return BuildPlan(str(source), profile, unit, precision, model, export_model, info, ckpt, size, out,
                     quantized, keeps, names, auto)


def calibrate(plan: BuildPlan, data, calib_def: dict, holdout, say=lambda s: None):
    """Step 2 (int8 the unit quantizes itself): ``(arrays for the exporter, the raw images,
    the manifest's calibration entry)``; nothing when no calibration is needed."""
    if not plan.needs_calibration:
        return None, [], None
    if data is None:
        from edgeseg.formats.base import INT8_NEEDS_DATA

        raise ConfigError(INT8_NEEDS_DATA)
    from edgeseg.reference import TorchPredictor

    ds = _open(data, calib_def["split"], holdout)
    if ds is None:
        raise ConfigError(f"dataset '{data}' has no '{calib_def['split']}' split for calibration: "
                          f"set split in the calibration definition")
    plan.info.check_compatible(ds.info, f"dataset '{data}'")
    idx = _pick(len(ds), calib_def["images"], calib_def["selection"], int(calib_def.get("seed", 0)))
    raw = [ds.read(i)[0] for i in idx]
    ref = TorchPredictor.from_model(plan.model, plan.info, plan.size)
    arrays = [ref.preprocess(img)[0] for img in raw]
    entry = {"file": calib_def["file"], "split": calib_def["split"], "images": len(idx),
             "selection": calib_def["selection"], "seed": calib_def.get("seed", 0), "dataset": str(data)}
    say(f"calibration: {len(idx)} {calib_def['split']} images from {data} ({calib_def['selection']})")
    return arrays, raw, entry


def parity_inputs(plan: BuildPlan, data, split: str, count: int, holdout, calib_raw, calib_split: str):
    """Step 3: the images parity compares on: ``split`` of ``data`` with masks, else the
    calibration images, else the training split, else deterministic synthetic images."""
    if data is not None:
        vds = _open(data, split, holdout)
        if vds is not None and len(vds):
            plan.info.check_compatible(vds.info, f"dataset '{data}'")
            pairs = [vds.read(i) for i in range(min(count, len(vds)))]
            return ([p[0] for p in pairs], [p[1] for p in pairs],
                    f"{len(pairs)} '{split}' images of {data} (with masks: mIoU compared)")
        if calib_raw:
            images = calib_raw[:count]
            return images, None, f"{len(images)} calibration images of {data} (no '{split}' split)"
        tds = _open(data, calib_split, holdout)
        if tds is not None and len(tds):
            images = [tds.read(i)[0] for i in range(min(count, len(tds)))]
            return images, None, f"{len(images)} '{calib_split}' images of {data} (no '{split}' split)"
    images = synthetic_images(max(1, min(count, 4)), plan.size)
    return images, None, f"{len(images)} deterministic synthetic images (no --data given)"


def export_artifact(plan: BuildPlan, folder: Path, calib_arrays, calib_entry, say=lambda s: None) -> dict:
    """Step 4: the unit writes its files into ``folder``; returns the manifest (also written there)."""
    from edgeseg.native_logs import captured

    t0 = time.perf_counter()
    with captured():  # the converters' native logs (absl, MLIR, torchao...) stay off the terminal
        result = plan.unit.export(plan.export_model, plan.info, input_size=plan.size, precision=plan.precision,
                                  out_dir=folder, profile=plan.profile, calib=calib_arrays,
                                  quantized=plan.quantized if plan.keeps_quantization else None,
                                  keep_float=plan.keep_float)
    export_seconds = time.perf_counter() - t0
    quant = None
    if plan.precision == "int8" or result.details.get("quantization"):
        quant = dict(result.details.get("quantization") or {})
        if calib_entry:
            quant.setdefault("calibration", calib_entry)
    profile = plan.profile
    compiler = result.details.get("compiler") or (
        {"name": profile.compiler.get("name"), "command": profile.compiler.get("command"), "ran": False,
         "report": None} if profile.compiler else None)
    manifest = make_manifest(model=plan.model, info=plan.info, profile=profile, precision=plan.precision,
                             input_size=plan.size, result=result, source=_source_entry(plan.source, plan.ckpt),
                             quantization=quant, compiler=compiler)
    manifest["quantization"] = quant
    manifest["export_seconds"] = round(export_seconds, 3)
    tpu_check = result.details.get("edgetpu_check")
    if tpu_check is not None and not tpu_check.get("ok"):
        # The file still runs on a CPU, so this warns rather than fails the build.
        say(f"warning: Edge TPU check: {tpu_check.get('summary')} (see edgetpu_check in manifest.json)")
    write_manifest(folder, manifest)
    return manifest


#: the parity facts the manifest repeats (parity.json has them all)
MANIFEST_PARITY_KEYS = ("ran", "reason", "runtime", "proxy", "reference", "agreement", "max_abs_logit_diff",
                        "miou_reference", "miou_artifact", "miou_drop", "flags", "passed", "image_source")


def run_parity(plan: BuildPlan, folder: Path, manifest: dict, images, masks, image_source: str, *, threads=None,
               allow_drop: bool = False, say=lambda s: None, judge: bool = True, why=None) -> dict:
    """Step 5: the artifact in its runtime (or a stated proxy) against the checkpoint in PyTorch;
    writes parity.json, records it in the manifest, and raises BuildError where it failed
    (``judge`` False: the caller decides; ``why``: a callable giving what to add to the error)."""
    from edgeseg.files import atomic_write_text
    from edgeseg.formats.base import BuildError, export_step
    from edgeseg.native_logs import captured

    with export_step(f"parity run ({plan.profile.runtime})"), captured():
        parity = check_parity(folder, plan.model, plan.info, plan.size, plan.profile, plan.precision, images=images,
                              masks=masks, image_source=image_source, threads=threads, reference=plan.reference)
    atomic_write_text(folder / "parity.json", json.dumps(parity, indent=2) + "\n")
    if parity.get("execution"):
        manifest["execution"] = parity["execution"]
    manifest["parity"] = {k: parity.get(k) for k in MANIFEST_PARITY_KEYS if k in parity}
    manifest["parity"]["file"] = "parity.json"
    if judge:
        judge_parity(plan, parity, allow_drop=allow_drop, say=say, why=why)
    return parity


def judge_parity(plan: BuildPlan, parity: dict, *, allow_drop: bool = False, say=lambda s: None, why=None) -> None:
    """BuildError where parity ran and failed (unless --allow-drop); ``why()`` adds the likely cause."""
    from edgeseg.formats.base import BuildError

    if not parity.get("ran") or parity["passed"]:
        return
    if allow_drop:
        say("parity FAILED but --allow-drop was given: " + "; ".join(parity["failures"]))
        return
    hint = why() if why else ""
    raise BuildError(f"parity check failed for '{plan.source}' on target '{plan.profile.name}' "
                     f"({plan.precision}): " + "; ".join(parity["failures"]) + (hint or ": retrain/calibrate "
                     "better, try another precision, or pass --allow-drop to keep the artifact anyway"))


def rank_layers(plan: BuildPlan, folder: Path, manifest: dict, calib_arrays) -> list[dict] | None:
    """The int8 artifact's layers by the error each adds (on the calibration images), or None."""
    if plan.precision != "int8" or not calib_arrays or not plan.unit.keeps_layers_float:
        return None
    from edgeseg.formats.base import BuildError
    from edgeseg.native_logs import captured

    try:
        with captured():
            return plan.unit.rank_int8_layers(plan.export_model, plan.size, folder / manifest["files"]["model"],
                                              calib_arrays, folder)
    except BuildError as exc:  # the ranking explains a failure; it must not replace it
        log.warning("no per-layer int8 ranking: %s", exc)
        return None


def worst_layers_hint(plan: BuildPlan, ranking) -> str:
    """': the layers adding most error ...: rebuild with --keep-float A,B,C', or nothing."""
    if not ranking:
        return ""
    top = ranking[:3]
    names = ",".join(r["node"] for r in top)
    table = ", ".join(f"{r['node']} ({r['op']}, -{r['drop_db']:.1f} dB)" for r in top)
    return (f"; the layers adding most int8 error: {table}: rebuild with --keep-float {names} (or --keep-float "
            f"auto), or pass --allow-drop to keep it")


def _empty(folder: Path) -> None:
    for p in Path(folder).iterdir():
        if p.is_file():
            p.unlink()


def export_and_check(plan: BuildPlan, folder: Path, calib_arrays, calib_entry, images, masks, image_source: str, *,
                     threads=None, allow_drop: bool = False, max_float_layers: int = 8,
                     say=lambda s: None) -> tuple[dict, dict]:
    """Steps 4 and 5, with --keep-float auto: while parity fails, the layer adding most int8 error
    (ranked once, on the full-int8 artifact) is left in float and the artifact built again."""
    from edgeseg.formats.base import BuildError

    ranking = None
    while True:
        manifest = export_artifact(plan, folder, calib_arrays, calib_entry, say)
        parity = run_parity(plan, folder, manifest, images, masks, image_source, threads=threads, judge=False)
        failed = parity.get("ran") and not parity["passed"]
        if ranking is None and (failed or plan.keep_float_auto) and plan.precision == "int8":
            ranking = rank_layers(plan, folder, manifest, calib_arrays) if failed else None
        if not failed or not plan.keep_float_auto:
            break
        todo = [r for r in ranking or [] if r["node"] not in plan.keep_float]
        if not todo or len(plan.keep_float) >= max_float_layers:
            table = ", ".join(f"{r['node']} (-{r['drop_db']:.1f} dB)" for r in (ranking or [])[:6])
            raise BuildError(f"--keep-float auto: parity still fails with {len(plan.keep_float)} layers in float "
                             f"({'; '.join(parity['failures'])}); ranked: {table or 'no ranking'}: raise "
                             f"--max-float-layers, calibrate on more images, or pass --allow-drop")
        plan.keep_float.append(todo[0]["node"])
        say(f"--keep-float auto: {todo[0]['node']} ({todo[0]['op']}, -{todo[0]['drop_db']:.1f} dB) kept in float "
            f"after: {'; '.join(parity['failures'])}")
        _empty(folder)
    if ranking:
        (manifest.get("quantization") or {})["layer_error"] = {
            "method": "onnxruntime qdq_loss_debug: SQNR drop (dB) each node adds, on the calibration images",
            "ranking": ranking[:20]}
    judge_parity(plan, parity, allow_drop=allow_drop, say=say, why=lambda: worst_layers_hint(plan, ranking))
    return manifest, parity


def build(source, target: str, *, precision: str | None = None, out=None, data=None, split: str = "val",
          calib_images: int | None = None, calib=None, input_size=None, allow_drop: bool = False,
          parity_images: int = 8, threads: int | None = None, force: bool = False,
          keep_float: str | None = None, max_float_layers: int = 8, report: list | None = None) -> Path:
    """Build the artifact of ``source`` (checkpoint path or zoo name) for ``target``; returns its folder.

    The steps: plan, calibrate, pick the parity images, export, parity, commit (the staged
    folder becomes ``out`` only when every step passed). ``report`` (a list) receives one line
    per notable fact for the CLI to print.
    """
    from edgeseg.data.holdout import holdout_of
    from edgeseg.files import FolderTaken, staged_folder
    from edgeseg.formats import BuildError

    say = report.append if report is not None else (lambda s: None)
    if threads is not None and int(threads) < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if parity_images < 1:
        raise ConfigError(f"--parity-images must be at least 1, got {parity_images}")
    t_start = time.perf_counter()
    if max_float_layers < 1:
        raise ConfigError(f"--max-float-layers must be at least 1, got {max_float_layers}")
    plan = plan_build(source, target, precision=precision, out=out, input_size=input_size, force=force,
                      keep_float=keep_float, say=say)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    calib_def = load_calib_definition(calib)
    if calib_images is not None:
        calib_def["images"] = int(calib_images)
    holdout = holdout_of(plan.ckpt)  # a dataset without a val split: the images training held out
    calib_arrays, calib_raw, calib_entry = calibrate(plan, data, calib_def, holdout, say)
    images, masks, image_source = parity_inputs(plan, data, split, parity_images, holdout, calib_raw,
                                                calib_def["split"])
    try:
        with staged_folder(plan.out, replace=force, label="build") as folder:
            manifest, parity = export_and_check(plan, folder, calib_arrays, calib_entry, images, masks, image_source,
                                                threads=threads, allow_drop=allow_drop,
                                                max_float_layers=max_float_layers, say=say)
            manifest["build_seconds"] = round(time.perf_counter() - t_start, 3)
            write_manifest(folder, manifest)
    except FolderTaken:
        raise BuildError(f"output '{plan.out}' was written by another build while this one ran: pass "
                         f"--force to replace it or choose another --out") from None
    if proxy := parity.get("proxy"):
        say(f"note: {proxy}")
    if not parity.get("ran"):
        say(f"parity not run: {parity.get('reason')}")
    for flag in (parity.get("flags") or {}).get("reference") or []:
        say(f"warning: the source model is degenerate on the parity images ({flag}): parity only shows the "
            f"artifact matches it; train longer or check the labels (edgeseg data check)")
    log.info("built %s", plan.out)
    return plan.out


def summarize(out: Path) -> dict:
    """Files, sizes, precision and parity numbers of a built artifact (for the CLI)."""
    from edgeseg.formats.predictor import read_manifest

    m = read_manifest(out)
    files = {p.name: p.stat().st_size for p in sorted(Path(out).iterdir()) if p.is_file()}
    return {"out": str(out), "target": m["target"], "precision": m["precision"], "format": m["format"],
            "files": files, "model_mb": files.get(m["files"]["model"], 0) / 1e6,
            "total_mb": sum(files.values()) / 1e6, "parity": m.get("parity"), "compiler": m.get("compiler"),
            "kept_in_float": (m.get("quantization") or {}).get("kept_in_float") or [],
            "execution": m.get("execution")}


__all__ = ["build", "plan_build", "BuildPlan", "calibrate", "parity_inputs", "export_artifact", "run_parity",
           "export_and_check", "judge_parity", "rank_layers",
           "make_manifest", "write_manifest", "check_parity", "load_calib_definition",
           "parse_size", "resolve_input_size", "summarize", "EdgesegError"]
