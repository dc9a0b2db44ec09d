"""``compress()``: one run from a checkpoint (or zoo name) and a dataset to compressed
checkpoints and a report. Everything is written into a temporary folder beside ``out``
and renamed into place at the end, so a failed run leaves nothing behind."""

from __future__ import annotations

import copy
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from edgeseg.errors import CheckpointError, ConfigError, require


def resolve_preset(target: str) -> str:
    """``--target`` of compress: a preset name (edgeseg.compress.nncf_setup.TARGETS), or a build
    target, whose format unit names the preset for its device (``compress_presets``)."""
    from edgeseg.compress.nncf_setup import TARGETS
    from edgeseg.formats import get_unit
    from edgeseg.targets import list_targets, load_target

    key = str(target).lower()
    if key in TARGETS:
        return key
    if key in list_targets():
        profile = load_target(key)
        preset = get_unit(profile.runtime).compress_presets.get(str(profile.device or "").upper())
        if preset:
            return preset
        raise ConfigError(f"target '{key}' takes no compressed checkpoint (its {profile.runtime} build has no "
                          f"int8 from edgeseg compress): compress for another target, or build the fp32 checkpoint")
    raise ConfigError(f"unknown compression target '{target}': use one of {', '.join(TARGETS)} or a build target "
                      f"({', '.join(list_targets())})")


def _check_args(qat, ptq, max_drop, prune, prune_mode, epochs, steps, target, runs, threads, ignore, sensitivity):
    from edgeseg.compress.nncf_setup import target_preset
    from edgeseg.compress.prune import check_mode, check_ratio

    if not (qat or ptq or max_drop is not None or prune is not None):
        raise ConfigError("nothing to do: give at least one of --ptq, --max-drop, --qat or --prune RATIO")
    if max_drop is not None and not (0.0 < float(max_drop) < 1.0):
        raise ConfigError(f"--max-drop is an absolute mIoU drop in (0, 1), got {max_drop}")
    if prune is not None:
        check_ratio(prune)
        check_mode(prune_mode)
    if epochs is None or float(epochs) < 0:
        raise ConfigError(f"--epochs must be 0 or more, got {epochs}")
    if steps < 0:
        raise ConfigError(f"--steps must be 0 or more, got {steps}")
    if runs < 1 or threads < 1:
        raise ConfigError("--runs and --threads must be at least 1")
    if target_preset(target).name == "edgetpu":
        if max_drop is not None:
            raise ConfigError("--max-drop (accuracy-controlled PTQ) works on OpenVINO models, not with --target "
                              "edgetpu (TFLite): use --qat or --ptq")
        if ignore or sensitivity:
            raise ConfigError("--ignore and --sensitivity work with NNCF's quantizer, not with --target edgetpu "
                              "(litert-torch's PT2E quantizer, full-integer int8 for the Edge TPU): leave them out")
        # before any data is read or any minute is spent: the PT2E quantizer lives in the tflite extra
        require("litert_torch", "tflite", "quantization for TFLite / the Edge TPU (--target edgetpu)")
    elif qat or ptq or max_drop is not None:
        require("nncf", "openvino", "int8 quantization with NNCF")


def _check_ignore(model, ignore) -> None:
    """Every module path given to --ignore exists in the model (a typo would otherwise be reported
    as a layer kept in fp32). NNCF node names (with '/') and ``re:`` patterns are NNCF's to match."""
    modules = {name for name, _ in model.named_modules() if name}
    for item in ignore or ():
        if not item.startswith("re:") and "/" not in item and item not in modules:
            import difflib

            close = difflib.get_close_matches(item, sorted(modules), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"--ignore '{item}' is not a module of the model{hint}: give a module path such as "
                              f"{', '.join(sorted(m for m in modules if '.' not in m)[:5])}")


def _split_ignore(ignore) -> tuple[list[str], list[str]]:
    """NNCF node names contain '/' (``head/cls/conv2d/0``); anything else is a module path
    (``head``, ``aux_heads.0``) matched as a pattern over all its nodes, or a regex if it
    starts with ``re:``."""
    from edgeseg.compress.nncf_setup import module_pattern

    names, patterns = [], []
    for item in ignore or ():
        if item.startswith("re:"):
            patterns.append(item[3:])
        elif "/" in item:
            names.append(item)
        else:
            patterns.append(module_pattern(item))
    return names, patterns


class _NNCFQuantizer:
    """NNCF (OpenVINO, ONNX Runtime, TensorRT targets): checkpoints are saved at the training size."""

    name = "nncf.quantize"
    entry: dict = {}
    head = None

    def __init__(self, data, *, target, ignore_names, ignore_patterns, input_size, train_size, epochs, steps, lr,
                 batch_size, loss, log):
        self.d, self.input_size, self.saved_size = data, input_size, train_size
        self.kw = dict(target=target, ignore_names=ignore_names, ignore_patterns=ignore_patterns)
        self.train = dict(img_size=train_size, epochs=epochs, steps=steps, lr=lr, batch_size=batch_size, log=log,
                          loss=loss)

    def ptq(self, model):
        from edgeseg.compress import quant

        return quant.ptq(model, self.d.calibration(self.input_size), **self.kw)

    def qat(self, model):
        from edgeseg.compress import quant

        return quant.qat(model, self.d, calib_size=self.input_size, **self.train, **self.kw)


class _PT2EQuantizer(_NNCFQuantizer):
    """litert-torch's PT2E quantizer (TFLite / the Edge TPU), so that the build converts these very
    quantizers; the graph is saved at the static input size with the coral profile's head options."""

    name = "PT2E, litert-torch quantizer"
    entry = {"backend": "pt2e"}

    def __init__(self, data, **kw):
        from edgeseg.formats.litert import pt2e
        from edgeseg.targets import load_target

        super().__init__(data, **kw)
        self.saved_size = self.input_size
        self.head = pt2e.head_for_target(load_target("coral").extra)

    def ptq(self, model):
        from edgeseg.formats.litert import pt2e

        return pt2e.ptq(model, self.d.calibration(self.input_size), input_size=self.input_size, head=self.head)

    def qat(self, model):
        from edgeseg.formats.litert import pt2e

        return pt2e.qat(model, self.d, calib_size=self.input_size, head=self.head, **self.train)


def _quantizer(pt2e: bool, data, **kw):
    return (_PT2EQuantizer if pt2e else _NNCFQuantizer)(data, **kw)


def compress(source, data, *, qat: bool = False, ptq: bool = False, max_drop: float | None = None,
             prune: float | None = None, prune_mode: str = "structured", epochs: float = 1.0, steps: int = 0,
             lr: float | None = None, prune_epochs: float | None = None, prune_lr: float | None = None,
             batch_size: int = 4, target: str = "cpu", ignore=(),
             sensitivity: bool = False, out="runs/compress", val_images: int | None = None,
             calib_images: int = 32, runs: int = 30, warmup: int = 5, threads: int = 1, force: bool = False,
             log=print) -> dict:
    """Compress a model; returns the report (also written to ``out/report.json`` and ``.md``).

    Variants: ``fp32`` (reference), ``int8_ptq`` (``ptq``), ``int8_ptq_ac`` (``max_drop``:
    accuracy-controlled PTQ, OpenVINO IR), ``int8_qat`` (``qat``), ``pruned`` / ``sparse``
    (``prune`` structured / unstructured, fine-tuned), ``pruned_int8_qat`` (structured
    ``prune`` and ``qat``). ``prune_epochs`` / ``prune_lr``: the pruned model's fine-tuning
    (default ``epochs`` / ``lr``): removing channels costs far more accuracy than int8 does,
    so it usually needs a longer run at a higher rate than QAT."""
    from edgeseg.build import resolve_input_size
    from edgeseg.compress import quant
    from edgeseg.compress.nncf_setup import target_preset
    from edgeseg.compress.common import Data, evaluate, finetune, recalibrate_bn, bn_batches
    from edgeseg.data.holdout import holdout_of
    from edgeseg.checkpoints import load_compressed
    from edgeseg.compress.io import save_compressed
    from edgeseg.compress.prune import prune_structured, prune_unstructured, sparsity, strip_unstructured
    from edgeseg.compress_report import goals, measure, write_report
    from edgeseg.formats.openvino.quantize import ptq_accuracy_control
    from edgeseg.models.profile import count_macs, count_params

    from edgeseg.formats.onnx_model import is_onnx_source

    if is_onnx_source(source):
        raise ConfigError(f"'{source}' is an ONNX model: compress fine-tunes and quantizes PyTorch models; build "
                          f"int8 from the file with `edgeseg build {source} --target T --precision int8 --data DIR` "
                          f"(post-training, per target), or compress the PyTorch model it came from")
    target = resolve_preset(target)
    _check_args(qat, ptq, max_drop, prune, prune_mode, epochs, steps, target, runs, threads, ignore, sensitivity)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"output folder '{out}' exists and is not empty: choose another --out or pass --force")
    model, info, ckpt = load_compressed(source)
    _check_ignore(model, ignore)
    if ckpt.get("quantization"):
        raise CheckpointError(f"'{source}' is already int8 (quantized by `edgeseg compress`): start from the "
                              f"fp32 checkpoint")
    train_size = resolve_input_size(model, ckpt)  # fine-tuning crop: the training size
    # fine-tuning crops use the model's own training scale range when the checkpoint records it
    train_scale = (ckpt.get("config") or {}).get("scale") or (0.5, 2.0)
    holdout = holdout_of(ckpt)
    d = Data(data, info, model.size_divisor, val_images=val_images, calib_images=calib_images,
             train_scale=train_scale, holdout=holdout)
    # the variants keep the hold-out, so eval, build and bench score them on the same images
    kept = {"config": {"holdout": holdout}} if holdout else {}
    # Static size for conversion, calibration and latency: the (padded) validation images,
    # at least the training size.
    shapes = [d.val_subset[i][0].shape[-2:] for i in range(len(d.val_subset))]
    input_size = (max([train_size[0]] + [int(s[0]) for s in shapes]),
                  max([train_size[1]] + [int(s[1]) for s in shapes]))
    if prune_epochs is not None and not prune_epochs > 0:
        raise ConfigError(f"--prune-epochs must be > 0, got {prune_epochs}")
    if prune_lr is not None and not prune_lr > 0:
        raise ConfigError(f"--prune-lr must be > 0, got {prune_lr}")
    qat_lr = lr if lr is not None else 1e-5
    ft_lr = prune_lr if prune_lr is not None else lr if lr is not None else 1e-4
    ft_epochs = prune_epochs if prune_epochs is not None else epochs
    # fine-tune with the loss the model was trained with (e.g. OHEM for the zoo models; class
    # weights of a wce term are counted again on the fine-tuning images)
    ft_loss = str((ckpt.get("config") or {}).get("loss") or "ce")
    x = torch.zeros(1, 3, *input_size)
    use_pt2e = target_preset(target).name == "edgetpu"

    t_start = time.time()
    report = {"source": str(source), "model": ckpt["model"], "target": target_preset(target).__dict__,
              "run": {"data": str(data), "val_images": len(d.val_subset), "input_size": list(input_size),
                      "finetune_crop": list(train_size),
                      "runs": runs, "warmup": warmup, "threads": threads, "epochs": epochs, "steps": steps,
                      "prune_epochs": ft_epochs if prune is not None else None,
                      "lr_qat": qat_lr, "loss": ft_loss, "lr_prune": ft_lr if prune is not None else None,
                      "calib_images": calib_images, "batch_size": batch_size,
                      "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                                 f"(shared), torch {torch.__version__}"},
              "variants": {}, "kept_in_fp32": [], "finetune": {}, "files": {}}
    V = report["variants"]
    from edgeseg.files import staged_folder

    with staged_folder(out, replace=True, label="compress") as tmp:
        work = tmp / "_work"
        common = dict(data=d, input_size=input_size, workdir=work, runs=runs, warmup=warmup, threads=threads)
        p_fp, macs_fp = count_params(model), count_macs(model, tuple(input_size))
        ref = evaluate(model, d)
        log(f"fp32: val mIoU {ref['miou']:.4f}")
        V["fp32"] = measure("fp32", torch_model=model, summary=ref, params=p_fp, macs=macs_fp, **common)
        names, patterns = _split_ignore(ignore)
        if ignore:
            report["kept_in_fp32"].append({"variant": "all int8", "layers": list(ignore),
                                           "why": "named with --ignore"})
        if sensitivity and (ptq or qat or max_drop is not None):
            log("sensitivity search (one module group in fp32 at a time)...")
            s = quant.sensitivity(model, d, img_size=input_size, target=target, log=log)
            report["sensitivity"] = s
            picked = quant.pick_sensitive(s, max_drop if max_drop is not None else 0.01)
            if picked:
                from edgeseg.compress.nncf_setup import module_pattern

                patterns += [module_pattern(g) for g in picked]
            report["kept_in_fp32"].append({
                "variant": "int8_ptq / int8_qat", "layers": picked,
                "why": (f"sensitivity search: PTQ drop {s['fp32_miou'] - s['int8_miou']:+.4f}; keeping these groups "
                        f"in fp32 recovered the most mIoU") if picked else
                       "sensitivity search: PTQ was within the bound or no group helped"})
        qz = _quantizer(use_pt2e, d, target=target, ignore_names=names, ignore_patterns=patterns,
                        input_size=input_size, train_size=train_size, epochs=epochs, steps=steps, lr=qat_lr,
                        batch_size=batch_size, loss=ft_loss, log=log)
        if use_pt2e:
            report["quantizer"] = {"backend": "pt2e", "head_requested": qz.head, "note": target_preset(target).note}

        def save_quantized(q, name, method, pruning=None, **extra):
            entry = {"method": method, "target": target, **extra, **qz.entry}
            save_compressed(q, info, qz.saved_size, tmp / f"{name}.pt", quantization=entry, pruning=pruning,
                            **kept)
            report["files"][name] = f"{name}.pt"
            if use_pt2e:
                report["quantizer"]["head"] = q.head  # what was applied ("auto" resolved)

        if ptq:
            log(f"post-training quantization ({qz.name})...")
            q = qz.ptq(model)
            save_quantized(q, "int8_ptq", "ptq")
            V["int8_ptq"] = measure("int8_ptq", torch_model=q, reference=ref, params=p_fp, macs=macs_fp, **common)
        if max_drop is not None:
            log(f"accuracy-controlled PTQ (max drop {max_drop})...")
            ovq, det = ptq_accuracy_control(model, d, input_size, max_drop=max_drop, target=target,
                                            ignore_names=names, ignore_patterns=patterns)
            from edgeseg.formats.openvino.quantize import save_ir

            (tmp / "int8_ptq_ac").mkdir()
            save_ir(ovq, tmp / "int8_ptq_ac" / "model.xml")
            report["files"]["int8_ptq_ac"] = "int8_ptq_ac/model.xml"
            report["accuracy_control"] = det
            report["kept_in_fp32"].append({"variant": "int8_ptq_ac", "layers": det["reverted_to_fp32"],
                                           "why": det["why"]})
            V["int8_ptq_ac"] = measure("int8_ptq_ac", ov_model=ovq, reference=ref, params=p_fp, macs=macs_fp,
                                       **common)
        if qat:
            log(f"quantization-aware training ({epochs} epoch(s){f', {steps} steps' if steps else ''})...")
            q, rec = qz.qat(model)
            report["finetune"]["int8_qat"] = rec
            save_quantized(q, "int8_qat", "qat", finetune=rec)
            V["int8_qat"] = measure("int8_qat", torch_model=q, reference=ref, params=p_fp, macs=macs_fp, **common)
        if prune is not None:
            pm = copy.deepcopy(model)
            if prune_mode == "structured":
                log(f"structured pruning of {prune:.0%} channels...")
                det = prune_structured(pm, x, prune)
                recalibrate_bn(pm, bn_batches(d, train_size))
                rec = finetune(pm, d, img_size=train_size, epochs=ft_epochs, steps=0 if prune_epochs else steps,
                               lr=ft_lr, batch_size=batch_size, log=log, loss=ft_loss)
                recalibrate_bn(pm, bn_batches(d, train_size))
                report["finetune"]["pruned"] = rec
                report["pruning"] = det
                save_compressed(pm, info, train_size, tmp / "pruned.pt", pruning=det, **kept)
                report["files"]["pruned"] = "pruned.pt"
                V["pruned"] = measure("pruned", torch_model=pm, reference=ref, **common)
                if qat:
                    log("QAT of the pruned model...")
                    pq, rec = qz.qat(pm)
                    report["finetune"]["pruned_int8_qat"] = rec
                    save_quantized(pq, "pruned_int8_qat", "qat", finetune=rec, pruning=det)
                    V["pruned_int8_qat"] = measure("pruned_int8_qat", torch_model=pq, reference=ref,
                                                   params=V["pruned"]["params"], macs=V["pruned"]["macs"], **common)
            else:
                log(f"unstructured pruning (nncf.prune) of {prune:.0%} weights...")
                masked, det = prune_unstructured(pm, x, prune)
                rec = finetune(masked, d, img_size=train_size, epochs=ft_epochs,
                               steps=0 if prune_epochs else steps, lr=ft_lr, batch_size=batch_size, log=log, loss=ft_loss)
                recalibrate_bn(masked, bn_batches(d, train_size))
                plain, stats = strip_unstructured(masked, x)
                det.update(stats)
                det["zero_weight_fraction"] = sparsity(plain)
                report["finetune"]["sparse"] = rec
                report["pruning"] = det
                save_compressed(plain, info, train_size, tmp / "sparse.pt", pruning=det, **kept)
                report["files"]["sparse"] = "sparse.pt"
                V["sparse"] = measure("sparse", torch_model=plain, reference=ref, **common,
                                      extra={"zero_weight_fraction": det["zero_weight_fraction"]})
        report["goals"] = goals(V)
        report["run"]["seconds"] = round(time.time() - t_start, 1)
        shutil.rmtree(work, ignore_errors=True)
        write_report(tmp, report)
    report["out"] = str(out)
    log(f"wrote {out}/report.md")
    return report
