"""``edgeseg build``: a checkpoint -> a verified artifact folder for one target.

Flow: load the model and the target profile, check the precision and input size, gather
calibration images, export in a temporary folder beside ``out`` (one module per format,
chosen by the profile), write ``manifest.json``, run the artifact in its real runtime and
compare it with the PyTorch fp32 model (``parity.json``), then rename the folder to
``out``. A failed step or parity check leaves nothing at ``out`` and no temporary folder.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
from pathlib import Path

from edgeseg.formats import tool_versions
from edgeseg.formats.predictor import FORMAT_VERSION, MANIFEST

def _merge(base: dict, extra: dict) -> dict:
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def make_manifest(*, model, info, profile, precision: str, input_size, result=None, source: dict | None = None,
                  quantization: dict | None = None, build_seconds: float | None = None,
                  compiler: dict | None = None, parity: dict | None = None, files: dict | None = None,
                  extra: dict | None = None) -> dict:
    """The manifest of an artifact; ``result.details`` (an ExportResult) is merged in last.

    Keys: format_version, model, target, format, runtime, device, precision, classes,
    colors, ignore_index, mean, std, input, output, files, source, quantization, tools,
    build_time, build_seconds, compiler, parity.
    """
    h, w = (int(v) for v in input_size)
    layout = profile.layout
    m = {
        "format_version": FORMAT_VERSION,
        "model": {"name": getattr(model, "model_name", type(model).__name__),
                  "num_classes": int(model.num_classes),
                  "kwargs": dict(getattr(model, "model_kwargs", {}))},
        "target": profile.name,
        "format": profile.format,
        "runtime": profile.runtime,
        "device": profile.device,
        "precision": precision,
        "dataset": info.name,
        "classes": list(info.classes),
        "colors": [list(c) for c in info.colors],
        "ignore_index": int(info.ignore_index),
        "mean": list(info.mean),
        "std": list(info.std),
        "input": {"name": "input", "size": [h, w], "layout": layout,
                  "dtype": profile.input_dtype_for(precision), "quant": None, "fit": "pad"},
        "output": {"name": "logits", "layout": layout, "kind": "logits", "dtype": "float32", "quant": None,
                   "size": [h, w], "num_classes": int(model.num_classes)},
        "files": dict(files or {}),
        "source": source or {},
        "quantization": quantization,
        "tools": tool_versions(),
        "build_time": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "build_seconds": build_seconds,
        "compiler": compiler,
        "parity": parity,
    }
    if result is not None:
        if "model" not in m["files"]:
            m["files"]["model"] = Path(result.model_file).name
        _merge(m, result.details)
    _merge(m, extra or {})
    return m


def write_manifest(artifact_dir, manifest: dict) -> Path:
    from edgeseg.train.checkpoint import atomic_write_text

    path = Path(artifact_dir) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str) + "\n")
    return path


# ---------------------------------------------------------------------------------------
# the build

import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from edgeseg.errors import ConfigError, EdgesegError  # noqa: E402

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


def parse_size(text) -> tuple[int, int]:
    """``"384x480"`` / ``"384"`` / (h, w) -> (h, w)."""
    if isinstance(text, (tuple, list)):
        vals = list(text)
    else:
        vals = str(text).lower().replace(",", "x").split("x")
    try:
        vals = [int(v) for v in vals]
    except ValueError:
        raise ConfigError(f"bad image size {text!r}: use HxW, e.g. 384x480") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise ConfigError(f"bad image size {text!r}: use HxW, e.g. 384x480")
    return vals[0], vals[1]


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
    from edgeseg.metrics import ConfusionMatrix

    from edgeseg.progress import track

    cm = ConfusionMatrix(num_classes, ignore_index) if masks is not None else None
    preds, raws = [], []
    for i, img in track(list(enumerate(images)), f"parity: {predictor.runtime}"):
        x, meta = predictor.preprocess(img)
        y = predictor.infer(x)
        preds.append(predictor.postprocess(y, meta))
        raws.append(y)
        if cm is not None:
            cm.update(preds[-1], masks[i])
    miou = cm.compute()["miou"] if cm is not None else None
    return preds, raws, miou


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


def build(source, target: str, *, precision: str | None = None, out=None, data=None, split: str = "val",
          calib_images: int | None = None, calib=None, input_size=None, allow_drop: bool = False,
          parity_images: int = 8, threads: int | None = None, force: bool = False,
          report: list | None = None) -> Path:
    """Build the artifact of ``source`` (checkpoint path or zoo name) for ``target``; returns its folder.

    ``report`` (a list) receives one line per notable fact for the CLI to print.
    """
    from edgeseg.formats import BuildError, get_unit
    from edgeseg.targets import load_target
    from edgeseg.checkpoints import load_model

    say = report.append if report is not None else (lambda s: None)
    if threads is not None and int(threads) < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if parity_images < 1:
        raise ConfigError(f"--parity-images must be at least 1, got {parity_images}")
    t_start = time.perf_counter()
    profile = load_target(target)
    requested = precision
    precision = profile.check_precision(precision)
    model, info, ckpt = load_model(source)
    model = model.float().eval().cpu()
    # A quantized checkpoint (edgeseg compress --qat/--ptq) is int8 by construction.
    qat = ckpt.get("quantization") or None
    if qat and precision != "int8":
        if requested is not None or "int8" not in profile.precisions:
            raise ConfigError(f"'{source}' is an int8-quantized checkpoint (edgeseg compress, {qat.get('method')}): "
                              f"build it with --precision int8 for a target that has int8, or build its float "
                              f"source checkpoint for {precision}")
        precision = "int8"
    unit = get_unit(profile.runtime)
    backend = (qat or {}).get("backend", "nncf")
    uses_qat = bool(qat) and backend in unit.quantized_checkpoints
    export_model = model
    if qat and not uses_qat and backend != "nncf":  # only NNCF's quantizers can be dropped for the float weights
        from edgeseg.targets import list_targets

        takes = [t for t in list_targets() if backend in get_unit(load_target(t).runtime).quantized_checkpoints]
        raise ConfigError(f"'{source}' was quantized with {backend} (edgeseg compress) for another runtime: build "
                          f"it with --target {' or '.join(takes) or '(none here)'}, or compress the fp32 checkpoint "
                          f"for '{profile.name}'")
    if qat and not uses_qat:
        from edgeseg.checkpoints import float_model

        export_model, _ = float_model(ckpt, str(source))
        export_model = export_model.float().eval().cpu()
        say(f"note: the {profile.format} exporter cannot take NNCF's quantizers: it re-quantizes the checkpoint's "
            f"QAT-trained weights with its own calibration; parity compares with the QAT model")
    needs_calib = precision == "int8" and not uses_qat
    size = resolve_input_size(model, ckpt, input_size)
    out = Path(out) if out is not None else default_out(source, ckpt, profile.name, precision)
    _check_out(out, force)
    if threads:
        import torch

        torch.set_num_threads(int(threads))

    # calibration (int8) and parity images
    from edgeseg.reference import TorchPredictor

    ref = TorchPredictor.from_model(model, info, size)
    calib_def = load_calib_definition(calib)
    if calib_images is not None:
        calib_def["images"] = int(calib_images)
    calib_arrays, calib_raw, quant_calib = None, [], None
    from edgeseg.data.holdout import holdout_of

    holdout = holdout_of(ckpt)  # a dataset without a val split: the images training held out
    if data is not None and needs_calib:
        ds = _open(data, calib_def["split"], holdout)
        if ds is None:
            raise ConfigError(f"dataset '{data}' has no '{calib_def['split']}' split for calibration: "
                              f"set split in the calibration definition")
        info.check_compatible(ds.info, f"dataset '{data}'")
        idx = _pick(len(ds), calib_def["images"], calib_def["selection"], int(calib_def.get("seed", 0)))
        calib_raw = [ds.read(i)[0] for i in idx]
        calib_arrays = [ref.preprocess(img)[0] for img in calib_raw]
        quant_calib = {"file": calib_def["file"], "split": calib_def["split"], "images": len(idx),
                       "selection": calib_def["selection"], "seed": calib_def.get("seed", 0),
                       "dataset": str(data)}
        say(f"calibration: {len(idx)} {calib_def['split']} images from {data} ({calib_def['selection']})")
    elif needs_calib:
        from edgeseg.formats.base import INT8_NEEDS_DATA

        raise ConfigError(INT8_NEEDS_DATA)

    images, masks, image_source = None, None, None
    if data is not None:
        vds = _open(data, split, holdout)
        if vds is not None and len(vds):
            info.check_compatible(vds.info, f"dataset '{data}'")
            pairs = [vds.read(i) for i in range(min(parity_images, len(vds)))]
            images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
            image_source = f"{len(images)} '{split}' images of {data} (with masks: mIoU compared)"
        elif calib_raw:
            images = calib_raw[:parity_images]
            image_source = f"{len(images)} calibration images of {data} (no '{split}' split)"
        else:
            tds = _open(data, calib_def["split"], holdout)
            if tds is not None and len(tds):
                images = [tds.read(i)[0] for i in range(min(parity_images, len(tds)))]
                image_source = f"{len(images)} '{calib_def['split']}' images of {data} (no '{split}' split)"
    if images is None:
        images = synthetic_images(max(1, min(parity_images, 4)), size)
        image_source = f"{len(images)} deterministic synthetic images (no --data given)"

    # export in a temp folder beside out, then rename
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        from edgeseg.native_logs import captured

        t0 = time.perf_counter()
        with captured():  # the converters' native logs (absl, MLIR, torchao...) stay off the terminal
            result = unit.export(export_model, info, input_size=size, precision=precision, out_dir=tmp,
                                 profile=profile, calib=calib_arrays, qat=qat if uses_qat else None)
        export_seconds = time.perf_counter() - t0
        quant = None
        if precision == "int8" or result.details.get("quantization"):
            quant = dict(result.details.get("quantization") or {})
            if quant_calib:
                quant.setdefault("calibration", quant_calib)
        manifest = make_manifest(model=model, info=info, profile=profile, precision=precision, input_size=size,
                                 result=result, source=_source_entry(source, ckpt), quantization=quant,
                                 compiler=result.details.get("compiler") or (
                                     {"name": profile.compiler.get("name"), "command": profile.compiler.get("command"),
                                      "ran": False, "report": None} if profile.compiler else None))
        manifest["quantization"] = quant
        manifest["export_seconds"] = round(export_seconds, 3)
        tpu_check = result.details.get("edgetpu_check")
        if tpu_check is not None and not tpu_check.get("ok"):
            # The file still runs on a CPU, so this warns rather than fails the build.
            say(f"warning: Edge TPU check: {tpu_check.get('summary')} (see edgetpu_check in manifest.json)")
        write_manifest(tmp, manifest)

        from edgeseg.formats.base import export_step

        with export_step(f"parity run ({profile.runtime})"), captured():
            parity = check_parity(tmp, model, info, size, profile, precision, images=images, masks=masks,
                                  image_source=image_source, threads=threads,
                                  reference=f"pytorch, the checkpoint's {'PT2E' if backend == 'pt2e' else 'NNCF'} "
                                            f"fake-quantized int8 model" if qat else "pytorch fp32")
        from edgeseg.train.checkpoint import atomic_write_text

        atomic_write_text(tmp / "parity.json", json.dumps(parity, indent=2) + "\n")
        if parity.get("execution"):
            manifest["execution"] = parity["execution"]
        manifest["parity"] = {k: parity.get(k) for k in ("ran", "reason", "runtime", "proxy", "reference", "agreement",
                                                         "max_abs_logit_diff", "miou_reference", "miou_artifact",
                                                         "miou_drop", "flags", "passed", "image_source") if k in parity}
        manifest["parity"]["file"] = "parity.json"
        manifest["build_seconds"] = round(time.perf_counter() - t_start, 3)
        write_manifest(tmp, manifest)
        if parity.get("ran") and not parity["passed"]:
            if allow_drop:
                say("parity FAILED but --allow-drop was given: " + "; ".join(parity["failures"]))
            else:
                raise BuildError(f"parity check failed for '{source}' on target '{profile.name}' ({precision}): "
                                 + "; ".join(parity["failures"]) + ": retrain/calibrate better, try another "
                                 "precision, or pass --allow-drop to keep the artifact anyway")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
        # move into place (replacing an old folder only now that the new one is complete)
        if out.exists() and force:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:  # rename(2) onto a non-empty folder fails: a build that finished first is never replaced
                os.rename(tmp, out)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
                raise BuildError(f"output '{out}' was written by another build while this one ran: pass "
                                 f"--force to replace it or choose another --out") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if proxy := parity.get("proxy"):
        say(f"note: {proxy}")
    if not parity.get("ran"):
        say(f"parity not run: {parity.get('reason')}")
    for flag in (parity.get("flags") or {}).get("reference") or []:
        say(f"warning: the source model is degenerate on the parity images ({flag}): parity only shows the "
            f"artifact matches it; train longer or check the labels (edgeseg data check)")
    log.info("built %s", out)
    return out


def summarize(out: Path) -> dict:
    """Files, sizes, precision and parity numbers of a built artifact (for the CLI)."""
    from edgeseg.formats.predictor import read_manifest

    m = read_manifest(out)
    files = {p.name: p.stat().st_size for p in sorted(Path(out).iterdir()) if p.is_file()}
    return {"out": str(out), "target": m["target"], "precision": m["precision"], "format": m["format"],
            "files": files, "model_mb": files.get(m["files"]["model"], 0) / 1e6,
            "total_mb": sum(files.values()) / 1e6, "parity": m.get("parity"), "compiler": m.get("compiler"),
            "execution": m.get("execution")}


__all__ = ["build", "make_manifest", "write_manifest", "tool_versions", "check_parity", "load_calib_definition",
           "parse_size", "resolve_input_size", "summarize", "EdgesegError"]
