"""Turn a training run into a zoo model: fp16 weights, a card generated from the run.

The card's scores are measured here, on the shipped (half-precision) weights, so
``edgeseg eval NAME --data DIR`` reproduces them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from edgeseg.machine import cpu_model
from edgeseg.errors import CheckpointError
from edgeseg.train.checkpoint import atomic_write_text, file_sha256, load_checkpoint, save_checkpoint
from edgeseg.zoo import ZOO_DIR, half_precision_checkpoint

MAX_WEIGHTS_MB = 15


def _read_log(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _ship(ckpt: dict, name: str, data, zoo_dir: Path) -> dict:
    """Write ``<name>.pt`` (fp16 weights, deployed input size) and score it on val: the card's
    common part. The scores are measured on the shipped file."""
    from edgeseg.data import open_dataset
    from edgeseg.evaluate import evaluate
    from edgeseg.models import count_macs, count_params
    from edgeseg.checkpoints import model_from_checkpoint
    from edgeseg.data.holdout import holdout_of

    model, info = model_from_checkpoint(ckpt)
    # Ship the size the model is deployed at (a val image rounded up to the stride), which
    # `edgeseg build` uses by default; the training crop stays in the card.
    h, w = open_dataset(data, "val").read(0)[0].shape[:2]
    eval_size = [model.valid_size(h), model.valid_size(w)]
    slim = half_precision_checkpoint(ckpt)
    slim["input_size"] = eval_size
    weights = zoo_dir / f"{name}.pt"
    save_checkpoint(slim, weights)
    size_mb = weights.stat().st_size / 2**20
    if size_mb > MAX_WEIGHTS_MB:
        weights.unlink()
        raise CheckpointError(f"{name}: {size_mb:.1f} MB of fp16 weights is over the zoo's {MAX_WEIGHTS_MB} MB limit")

    t0 = time.perf_counter()
    scores = evaluate(weights, data, "val")
    eval_seconds = time.perf_counter() - t0
    holdout = holdout_of(ckpt)
    by_groups = bool(holdout and holdout.get("groups") and holdout.get("by") != "image" and scores.get("held_out"))
    return {
        "name": name,
        "model": ckpt["model"],
        "dataset": info.to_dict(),
        "weights": {"file": weights.name, "sha256": file_sha256(weights), "bytes": weights.stat().st_size,
                    "dtype": "float16"},
        "train_input_size": ckpt["input_size"],
        "eval": {"split": "val", "images": scores["images"], "input_size": eval_size, "image_size": [h, w],
                 "fit": "images padded bottom/right to the model's stride; padded pixels are ignored",
                 "seconds": round(eval_seconds, 1)},
        "metrics": {"val_miou": scores["miou"], "val_pixel_accuracy": scores["pixel_accuracy"],
                    "val_mean_class_accuracy": scores.get("mean_class_accuracy"),
                    "per_class_iou": scores["per_class_iou"]},
        "params": count_params(model),
        "macs": count_macs(model, tuple(eval_size)),
        "holdout": _holdout_entry(holdout, scores) if by_groups else {
            "groups": None, "why": "trained on every group (video sequence) of its training split: no whole "
                                   "sequence was held out, so its val images have near-copies in training"},
    }


def _holdout_entry(holdout: dict, scores: dict) -> dict:
    """The card's sequence hold-out: the whole groups the training never saw and the score on
    them (the card's eval split then is that hold-out; the dataset's own val was trained on
    where the run trained on train+val)."""
    return {"groups": holdout["groups"], "from": holdout["from"], "images": scores["images"],
            "miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"],
            "val_in_training": bool(holdout.get("forced")) and "val" in holdout["from"].split("+")}


def write_card(card: dict, zoo_dir: Path) -> dict:
    """A card's JSON and its rendered Markdown, each written whole or not at all."""
    atomic_write_text(zoo_dir / f"{card['name']}.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(zoo_dir / f"{card['name']}.md", render_card(card))
    return card


def publish(run_dir, name: str, *, data, command: str, hardware: str | None = None, zoo_dir: Path = ZOO_DIR,
            log_dir: Path | None = None) -> dict:
    """Write ``<name>.pt``, ``<name>.json`` and ``<name>.md`` into ``zoo_dir`` from ``run_dir/best.pt``."""
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir / "best.pt")
    card = _ship(ckpt, name, data, zoo_dir)
    log = _read_log(run_dir)
    config = ckpt.get("config", {})
    card["training"] = {
        "command": command,
        "recipe": config,
        "epochs_run": len(log),
        # runs of `edgeseg train` (a fresh start, then each --resume); logs from before the
        # count was kept say nothing, so one
        "sittings": max([int(r.get("sitting", 1)) for r in log] or [1]),
        "epochs_planned": config.get("epochs"),
        "best_epoch": ckpt.get("metrics", {}).get("epoch"),
        "wall_time_s": round(sum(r.get("epoch_time_s", 0.0) for r in log), 1),
        "hardware": hardware or f"{cpu_model()}, {torch.get_num_threads()} threads, no GPU",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    if log_dir is not None and (run_dir / "metrics.jsonl").is_file():
        log_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "metrics.jsonl", log_dir / f"{name}-train-log.jsonl")
        card["training"]["log"] = f"{log_dir.name}/{name}-train-log.jsonl"
    return write_card(card, zoo_dir)


def publish_compressed(ckpt_path, name: str, *, data, command: str, hardware: str | None = None,
                       zoo_dir: Path = ZOO_DIR) -> dict:
    """A compressed variant (``edgeseg compress`` output, e.g. ``OUT/int8_qat.pt``) into the
    zoo. The card names the float model it came from (the report beside the checkpoint) and
    the mIoU change against it; the variant's own score is measured on the shipped file."""
    ckpt_path = Path(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    if not (ckpt.get("quantization") or ckpt.get("pruning")):
        raise CheckpointError(f"'{ckpt_path}' is not a compressed checkpoint (no quantization or pruning): "
                              f"publish its training run with publish() instead")
    report_path = ckpt_path.parent / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    card = _ship(ckpt, name, data, zoo_dir)
    quant = {k: v for k, v in (ckpt.get("quantization") or {}).items()
             if k not in ("nncf_config", "finetune", "float_shapes")}
    variant = ckpt_path.stem
    source_miou = ((report.get("variants") or {}).get("fp32") or {}).get("miou")
    finetune = (report.get("finetune") or {}).get(variant) or (ckpt.get("quantization") or {}).get("finetune")
    card["compression"] = {
        "variant": variant,
        "source": report.get("source"),
        "quantization": quant or None,
        "pruning": {k: v for k, v in (ckpt.get("pruning") or {}).items() if k != "channels"} or None,
        "finetune": finetune,
        "source_val_miou": source_miou,
        "val_miou_change": None if source_miou is None else card["metrics"]["val_miou"] - source_miou,
    }
    card["training"] = {
        "command": command,
        "epochs_run": round(float((report.get("run") or {}).get("epochs") or 0), 2),
        "best_epoch": None,
        "wall_time_s": float((report.get("run") or {}).get("seconds") or 0.0),
        "hardware": hardware or f"{cpu_model()}, {torch.get_num_threads()} threads, no GPU",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    return write_card(card, zoo_dir)


# The hyper-parameters that make a recipe: a hold-out run of a card's recipe must match them
# (its data splits differ by design: it trains without the held-out groups).
RECIPE_KEYS = ("epochs", "img_size", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "warmup_epochs",
               "loss", "scale", "hflip", "rotate", "elastic", "color_jitter", "model_kwargs")


def attach_recipe_holdout(name: str, run_dir, *, data, command: str, hardware: str | None = None,
                          zoo_dir: Path = ZOO_DIR, log_dir: Path | None = None) -> dict:
    """Record on card ``name`` the sequence hold-out score of its recipe: ``run_dir`` is a run
    of the same recipe that held whole groups out (``--holdout-groups``). Its ``best.pt``
    (chosen on the hold-out, so optimistic) and ``last.pt`` are scored on those groups.

    The card's own weights trained on every sequence, so they cannot be scored on unseen
    ones; this is the estimate the issue's protocol asks for: choose on the hold-out, ship
    the model trained on all the data."""
    from edgeseg.data.holdout import holdout_of
    from edgeseg.evaluate import evaluate
    from edgeseg.zoo import get_card

    run_dir = Path(run_dir)
    card = get_card(name, zoo_dir)
    if card.get("compression"):
        raise CheckpointError(f"'{name}' is a compressed variant: attach the hold-out run to its float source's card")
    best, last = (load_checkpoint(run_dir / f) for f in ("best.pt", "last.pt"))
    holdout = holdout_of(last)
    if not (holdout and holdout.get("groups") and holdout.get("by") != "image"):
        raise CheckpointError(f"'{run_dir}' held out no whole groups: train it with --holdout-groups")
    if last["model"]["name"] != card["model"]["name"]:
        raise CheckpointError(f"'{run_dir}' trained {last['model']['name']}, but '{name}' is "
                              f"{card['model']['name']}: a recipe's hold-out must be the same model")
    ours, theirs = last.get("config") or {}, (card["training"].get("recipe") or {})
    differ = [k for k in RECIPE_KEYS if k in theirs and _same(ours.get(k), theirs[k]) is False]
    if differ:
        raise CheckpointError(f"'{run_dir}' is not '{name}'s recipe: " + ", ".join(
            f"{k} {ours.get(k)!r} vs {theirs[k]!r}" for k in differ))
    scores = {f: evaluate(run_dir / f, data, "val") for f in ("best.pt", "last.pt")}
    log = _read_log(run_dir)
    entry = {"groups": holdout["groups"], "from": holdout["from"], "images": scores["last.pt"]["images"],
             "best_miou": scores["best.pt"]["miou"], "best_epoch": (best.get("metrics") or {}).get("epoch"),
             "last_miou": scores["last.pt"]["miou"], "last_epoch": last["train_state"]["epoch"] + 1,
             "per_class_iou_last": scores["last.pt"]["per_class_iou"],
             "wall_time_s": round(sum(r.get("epoch_time_s", 0.0) for r in log), 1),
             "compute": sorted({r["compute"] for r in log if r.get("compute")}) or None,
             "hardware": hardware or f"{cpu_model()}, no GPU",
             "command": command, "weights": "not shipped (fp32 run checkpoints scored as they are)"}
    if log_dir is not None and (run_dir / "metrics.jsonl").is_file():
        log_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "metrics.jsonl", log_dir / f"{name}-holdout-run-log.jsonl")
        entry["log"] = f"{log_dir.name}/{name}-holdout-run-log.jsonl"
    card["holdout"] = {**card["holdout"], "recipe_run": entry}
    # Its compressed variants point at it: their int8 weights were not scored on the hold-out.
    from edgeseg.zoo import read_cards

    for variant in read_cards(zoo_dir).values():
        if (variant.get("compression") or {}).get("source") == name:
            variant["holdout"] = {**variant["holdout"], "source_recipe_run": {
                "source": name, **{k: entry[k] for k in ("groups", "images", "last_miou", "best_miou")}}}
            write_card(variant, zoo_dir)
    return write_card(card, zoo_dir)


def _same(a, b) -> bool:
    """Recipe values compare across JSON round trips (a tuple comes back a list)."""
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return norm(a) == norm(b)


def render_card(card: dict) -> str:
    t, m = card["training"], card["metrics"]
    run = (card.get("holdout") or {}).get("recipe_run")
    fmt = lambda iou: "-" if iou is None else f"{iou:.4f}"  # noqa: E731
    if run:  # the rare classes are where val and an unseen sequence differ most
        head = f"| class | IoU | same recipe, {', '.join(run['groups'])} held out (last epoch) |\n|---|---:|---:|"
        rows = "\n".join(f"| {cls} | {fmt(iou)} | {fmt(run['per_class_iou_last'].get(cls))} |"
                         for cls, iou in m["per_class_iou"].items())
    else:
        head = "| class | IoU |\n|---|---:|"
        rows = "\n".join(f"| {cls} | {fmt(iou)} |" for cls, iou in m["per_class_iou"].items())
    colours = ", ".join(f"{c} {tuple(rgb)}" for c, rgb in zip(card["dataset"]["classes"], card["dataset"]["colors"]))
    h, w = card["eval"]["input_size"]
    c = card.get("compression")
    if c:
        q = c.get("quantization") or {}
        pt2e = q.get("backend") == "pt2e"
        what = " + ".join(x for x in ((f"{c['pruning'].get('ratio', 0):.0%} channels pruned" if c.get("pruning")
                                       else ""), (f"int8 ({q.get('method')}, "
                                                  + ("PT2E, litert-torch quantizer, for TFLite / the Edge TPU)" if pt2e
                                                     else f"NNCF preset '{q.get('target')}')") if q else "")) if x)
        change = "" if c.get("val_miou_change") is None else \
            f" (fp32 source {c['source_val_miou']:.4f}: change {c['val_miou_change']:+.4f})"
        how = ("PT2E fake-quantized graph, converted to a full-int8 .tflite by `edgeseg build --target coral` "
               "without calibration data" if pt2e else
               "NNCF fake-quantized PyTorch model, built as int8 by `edgeseg build` without calibration data")
        about = (f"`{card['model']['name']}` compressed from `{c.get('source')}`: {what}; {how}.\n\n"
                 f"The mIoU below is the PyTorch fake-quantized model's{change}.")
        run_line = f"| compression run | {t['wall_time_s'] / 60:.1f} min (whole `edgeseg compress` run) on {t['hardware']} |"
    else:
        about = (f"`{card['model']['name']}` trained from scratch on {card['dataset']['name']} "
                 f"({len(card['dataset']['classes'])} classes).")
        sittings = t.get("sittings")
        run_line = (f"| epochs | {t['epochs_run']} (best at {t['best_epoch']})"
                    f"{f', in {sittings} sitting(s) of edgeseg train' if sittings else ''} |\n"
                    f"| wall time | {t['wall_time_s'] / 60:.1f} min of training on {t['hardware']} |")
    return f"""# {card['name']}

{about}

| | |
|---|---|
{_score_rows(card)}{_builds_row(card)}
| params | {card['params'] / 1e6:.2f} M |
| MACs at {h}x{w} | {card['macs'] / 1e9:.2f} G |
| eval input | {h}x{w}: {card['eval']['fit']} |
| training crop | {card['train_input_size'][0]}x{card['train_input_size'][1]} |
{run_line}
| weights | `{card['weights']['file']}`, fp16, {card['weights']['bytes'] / 2**20:.2f} MB, sha256 `{card['weights']['sha256'][:16]}…` |
| mean / std | {card['dataset']['mean']} / {card['dataset']['std']} |

Reproduce: `{t['command']}`

Check: `edgeseg eval {card['name']} --data DIR` gives the {_split_name(card)} mIoU above.

## Per-class IoU ({_split_name(card)})

{head}
{rows}

Classes and colours: {colours}.
"""


def _held_groups(card: dict) -> list[str] | None:
    return (card.get("holdout") or {}).get("groups")


def _split_name(card: dict) -> str:
    groups = _held_groups(card)
    return f"sequence hold-out {', '.join(groups)}" if groups else "val"


def _score_rows(card: dict) -> str:
    """The card's first rows: the score `edgeseg eval NAME` reproduces, named for what it is."""
    m, hold = card["metrics"], card.get("holdout") or {}
    n = card["eval"]["images"]
    if _held_groups(card):
        val = ("not scored: the val images are in its training data "
               f"({hold['from']} less the hold-out)" if hold.get("val_in_training") else "-")
        return (f"| sequence hold-out mIoU | **{m['val_miou']:.4f}** ({n} images of {', '.join(hold['groups'])}, "
                f"whole sequence(s) the training never saw) |\n"
                f"| hold-out pixel accuracy | {m['val_pixel_accuracy']:.4f} |\n"
                f"| val mIoU | {val} |")
    why = hold.get("why") or "no sequence was held out in training"
    rows = (f"| val mIoU | **{m['val_miou']:.4f}** ({n} images) |\n"
            f"| val pixel accuracy | {m['val_pixel_accuracy']:.4f} |\n"
            f"| sequence hold-out mIoU | not measurable on these weights: {why} |")
    run = hold.get("recipe_run")
    if run:
        rows += (f"\n| same recipe, {', '.join(run['groups'])} held out | **{run['last_miou']:.4f}** at its last "
                 f"epoch ({run['last_epoch']}); {run['best_miou']:.4f} at epoch {run['best_epoch']}, the best "
                 f"of its evaluations on the hold-out (optimistic); {run['images']} images, a separate run on "
                 f"{run['from']} less {', '.join(run['groups'])} ({run['wall_time_s'] / 60:.0f} min, "
                 f"{'/'.join(run.get('compute') or ['-'])}, {run['hardware']}): "
                 f"`{run['command']}`, then `edgeseg eval OUT/last.pt --data DIR` |")
    src = hold.get("source_recipe_run")
    if src:
        rows += (f"\n| float source's recipe, {', '.join(src['groups'])} held out | {src['last_miou']:.4f} at its "
                 f"last epoch, {src['best_miou']:.4f} best ({src['images']} images; the float recipe of "
                 f"`{src['source']}` before compression: see its card; this variant was not scored there) |")
    return rows


def _builds_row(card: dict) -> str:
    """Which CPU target builds pass parity (tools/check_zoo_builds.py), where measured."""
    b = card.get("cpu_builds")
    if not b:
        return ""
    results = b["results"]
    failed = [f"{k} ({r.get('error', 'parity failed')})" for k, r in results.items() if not r.get("passed")]
    what = f"all {len(results)} pass" if not failed else f"{len(results) - len(failed)} of {len(results)} pass; " \
           f"failed: {'; '.join(failed)}"
    return f"\n| CPU builds (parity gate) | {what} ({b['date']}, {b['hardware']}: `{b['command']}`) |"


def render_zoo_index(zoo_dir: Path = ZOO_DIR) -> str:
    """docs/zoo.md: one row per zoo model, generated from the cards."""
    from edgeseg.zoo import default_model_name, read_cards

    cards = read_cards(zoo_dir)
    lines = ["# Model zoo", "",
             "Generated by `tools/publish_zoo.py` from the cards in `edgeseg/zoo/` (each card is written from its "
             "training run; scores are measured on the shipped fp16 weights). Reproduce a score with "
             "`edgeseg eval NAME --data ../shared/data/camvid`.", "",
             "**Sequence hold-out** is the mIoU on whole video sequences the training never saw "
             "(`edgeseg train --holdout-groups`); **val** is CamVid's val split, whose frames come from a "
             "sequence that also gives most training frames, so it flatters. A model trained on train+val has "
             "no unseen val; a model trained on all three sequences shows the hold-out score of a separate run "
             "of its recipe with a sequence held out (its last epoch, and its best evaluation, which was chosen "
             "on the hold-out and so is optimistic). The default model is the float model with the best "
             "hold-out score (`best`, the same estimate for every card) among those that build for every CPU "
             "target (a card that records a failed build, `tools/check_zoo_builds.py`, is left out).", "",
             "| name | model | sequence hold-out mIoU | val mIoU | pixel acc. | params | GMACs (eval size) | MB | "
             "epochs | training | command |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    default = default_model_name(zoo_dir) if cards else None
    for name, c in cards.items():
        t, m = c["training"], c["metrics"]
        h, w = c["eval"]["input_size"]
        lines.append(
            f"| `{name}`{' (default)' if name == default else ''} | {c['model']['name']} | "
            f"{_index_scores(c)} | "
            f"{m['val_pixel_accuracy']:.4f} | {c['params'] / 1e6:.2f} M | {c['macs'] / 1e9:.2f} ({h}x{w}) | "
            f"{c['weights']['bytes'] / 2**20:.2f} | {t['epochs_run']} | {t['wall_time_s'] / 60:.0f} min, "
            f"{t['hardware']} | `{t['command']}` |")
    lines += ["", "Per-class IoU, colours, mean/std: `edgeseg zoo show NAME` (the card, `edgeseg/zoo/NAME.md`). "
              "Training logs (one JSON line per epoch): `docs/zoo/NAME-train-log.jsonl`.", ""]
    return "\n".join(lines)


def _index_scores(card: dict) -> str:
    """The hold-out and val cells of docs/zoo.md's row."""
    score = f"{card['metrics']['val_miou']:.4f}"
    groups = _held_groups(card)
    if groups:
        return f"{score} ({', '.join(groups)}) | -"
    run = (card.get("holdout") or {}).get("recipe_run")
    return (f"{run['last_miou']:.4f} last / {run['best_miou']:.4f} best ({', '.join(run['groups'])}, "
            f"recipe run) | {score}") if run else f"- | {score}"


HAND_WRITTEN = "<!-- written by hand below: kept when the table above is regenerated -->"


def write_zoo_index(path: Path, zoo_dir: Path = ZOO_DIR) -> None:
    """docs/zoo.md: the generated table, then whatever follows HAND_WRITTEN in the old file."""
    old = path.read_text() if path.is_file() else ""
    tail = old[old.index(HAND_WRITTEN):] if HAND_WRITTEN in old else HAND_WRITTEN + "\n"
    atomic_write_text(path, render_zoo_index(zoo_dir) + "\n" + tail)
