"""The model zoo: trained weights shipped inside the package, each with a model card.

Each zoo model is two files in this folder: ``<name>.pt`` (an edgeseg checkpoint with
half-precision weights, no optimizer state) and ``<name>.json`` (its card: how it was
trained, on what, how long, and its measured validation scores). ``<name>.md`` is the
card rendered for people. Zoo names are ``<model>-<dataset>``, e.g. ``bisenetv1-camvid``.

Anything that takes a checkpoint path also takes a zoo name (``load_model`` resolves it).
"""

from __future__ import annotations

import difflib
import json
from importlib import resources
from pathlib import Path

import torch

from edgeseg.errors import CheckpointError, ModelError

ZOO_DIR = Path(str(resources.files(__package__)))


def read_cards(zoo_dir: Path = ZOO_DIR) -> dict[str, dict]:
    cards = {}
    for path in sorted(zoo_dir.glob("*.json")):
        card = json.loads(path.read_text(encoding="utf-8"))
        cards[card["name"]] = card
    return cards


def list_zoo(zoo_dir: Path = ZOO_DIR) -> list[str]:
    return list(read_cards(zoo_dir))


def is_zoo_name(name: str, zoo_dir: Path = ZOO_DIR) -> bool:
    return (zoo_dir / f"{name}.json").is_file()


def get_card(name: str, zoo_dir: Path = ZOO_DIR) -> dict:
    cards = read_cards(zoo_dir)
    if name not in cards:
        close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelError(f"'{name}' is neither a checkpoint file nor a zoo model: {hint}"
                         f"zoo models: {', '.join(cards) or 'none'} (see `edgeseg zoo list`)")
    return cards[name]


def default_model_name(zoo_dir: Path = ZOO_DIR, preferred: str | None = None) -> str:
    """The zoo model used when a command gets no model: the float model (a compressed variant
    is int8 already and would force every build to int8) that scores best on a sequence
    hold-out, its own or its recipe's (:func:`holdout_score`), among those that build for
    every CPU target (a card recording a failed build, :func:`failed_cpu_builds`, is left out
    unless every card does); val flatters, so a card with only a val score ranks below every
    card with a hold-out score. ``preferred`` (a target profile's ``extra.default_model``,
    e.g. coral: a model whose ops map to the Edge TPU; see
    :func:`edgeseg.targets.default_model`) wins when it is in the zoo."""
    all_cards = read_cards(zoo_dir)
    if preferred and preferred in all_cards:
        return preferred
    floats = [c for c in all_cards.values() if not c.get("compression")]
    if not floats:
        raise ModelError("the zoo is empty: give a checkpoint path")
    # the default must build for every CPU target: a card that records a failed build is out
    cards = [c for c in floats if not failed_cpu_builds(c)] or floats

    def rank(card: dict) -> tuple:
        score = holdout_score(card)
        return (1, score) if score is not None else (0, card["metrics"]["val_miou"])
    return max(cards, key=rank)["name"]


def failed_cpu_builds(card: dict) -> list[str]:
    """The target/precision builds a card records as failing their parity gate
    (``cpu_builds``, written by tools/check_zoo_builds.py)."""
    results = (card.get("cpu_builds") or {}).get("results") or {}
    return sorted(k for k, r in results.items() if not r.get("passed"))


def holdout_score(card: dict) -> float | None:
    """A card's sequence hold-out mIoU: its own (weights that never saw the held-out
    sequences; the checkpoint chosen on them) or, for weights trained on every sequence,
    the best evaluation of a separate run of its recipe (``holdout.recipe_run``), chosen the
    same way, so the two compare."""
    hold = card.get("holdout") or {}
    if hold.get("groups"):
        return card["metrics"]["val_miou"]
    run = hold.get("recipe_run")
    return run["best_miou"] if run else None


def zoo_checkpoint_path(name: str, zoo_dir: Path = ZOO_DIR) -> Path:
    card = get_card(name, zoo_dir)
    return zoo_dir / card["weights"]["file"]


def load_zoo_checkpoint(name: str, zoo_dir: Path = ZOO_DIR, map_location="cpu") -> dict:
    """The zoo model's checkpoint dict, weights back in float32; the file's hash is checked."""
    from edgeseg.files import file_sha256, load_checkpoint

    card = get_card(name, zoo_dir)
    path = zoo_dir / card["weights"]["file"]
    if file_sha256(path) != card["weights"]["sha256"]:
        raise CheckpointError(f"zoo weights '{path}' do not match their card's sha256: reinstall edgeseg")
    ckpt = load_checkpoint(path, map_location)
    ckpt["state_dict"] = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    ckpt["zoo"] = name
    return ckpt


def pretrained_state(model_name: str, pretrained: str, zoo_dir: Path = ZOO_DIR) -> tuple[dict, dict]:
    """``(state_dict, checkpoint)`` for ``create_model(model_name, pretrained=DATASET)``: the
    float zoo model of that architecture trained on that dataset (by its card, whatever its
    zoo name, e.g. ``deeplabv3plus-camvid`` for ``deeplabv3plus_mobilenetv2``)."""
    cards = read_cards(zoo_dir)
    match = [c["name"] for c in cards.values() if c["model"]["name"] == model_name
             and c["dataset"]["name"] == pretrained and not c.get("compression") and not c["model"].get("kwargs")]
    if not match:
        have = sorted({c["dataset"]["name"] for c in cards.values() if c["model"]["name"] == model_name})
        raise ModelError(f"no '{pretrained}' weights for '{model_name}' in the zoo: available "
                         f"{', '.join(have) or 'none for this model'}; all zoo models: {', '.join(cards)}")
    ckpt = load_zoo_checkpoint(match[0], zoo_dir)
    return ckpt["state_dict"], ckpt


#: Quantizer / mask parameters of compressed variants stay in fp32: a scale rounded to fp16
#: would move every int8 step of its tensor. NNCF's live under this prefix; PT2E graphs'
#: (``--target edgetpu``) in ``activation_post_process_N`` modules.
_KEEP_FP32_PREFIX = "__nncf_hooks."
_KEEP_FP32_PT2E = "activation_post_process_"


def _keep_fp32(key: str) -> bool:
    return key.startswith(_KEEP_FP32_PREFIX) or _KEEP_FP32_PT2E in key


def half_precision_checkpoint(ckpt: dict) -> dict:
    """A copy for shipping: float weights in fp16 (quantizer parameters stay fp32), no
    training state."""
    slim = {k: v for k, v in ckpt.items() if k not in ("train_state",)}
    slim["state_dict"] = {k: v.half() if v.is_floating_point() and not _keep_fp32(k) else v
                          for k, v in ckpt["state_dict"].items()}
    return slim


__all__ = ["ZOO_DIR", "list_zoo", "is_zoo_name", "get_card", "default_model_name", "failed_cpu_builds",
           "holdout_score", "zoo_checkpoint_path", "load_zoo_checkpoint", "pretrained_state", "half_precision_checkpoint"]
