"""Models by name: ``create_model("bisenetv2", num_classes=11)``, ``list_models("*net*")``."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable

from edgeseg.errors import ModelError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable
    paper: str
    description: str = ""
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, paper: str, description: str = "", **defaults):
    """Decorator for a builder ``fn(num_classes, **kw) -> SegmentationModel``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = ModelEntry(name, fn, paper, description or (fn.__doc__ or "").strip().split("\n")[0], defaults)
        return fn

    return wrap


def _ensure_loaded():
    # Importing the architecture modules registers them.
    from edgeseg.models import catalog  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelError(f"unknown model '{name}': {hint}valid models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int | None = None, *, pretrained: str | None = None, **kwargs):
    """Build a registered model; ``pretrained="camvid"`` loads the zoo's weights (offline).

    With ``pretrained``, ``num_classes`` defaults to (and must match) the weights' classes.
    """
    if pretrained is not None:
        from edgeseg.zoo import pretrained_state

        state, ckpt = pretrained_state(name, pretrained)
        zoo_classes = ckpt["model"]["num_classes"]
        if num_classes is not None and int(num_classes) != zoo_classes:
            raise ModelError(f"'{name}' {pretrained} weights have {zoo_classes} classes, not {num_classes}: "
                             f"drop num_classes or train your own head")
        model = create_model(name, zoo_classes, **{**ckpt["model"].get("kwargs", {}), **kwargs})
        model.load_state_dict(state)
        return model.eval()
    if num_classes is None:
        raise ModelError(f"create_model('{name}') needs num_classes (or pretrained=DATASET)")
    from edgeseg.models import own

    if own.is_own_spec(name):  # the user's code: imported only where the user allowed it
        if int(num_classes) < 1:
            raise ModelError(f"num_classes must be at least 1, got {num_classes}")
        model = own.create_own_model(name, int(num_classes), **kwargs)
        model.model_name = name
        return model
    entry = get_entry(name)
    if int(num_classes) < 1:
        raise ModelError(f"num_classes must be at least 1, got {num_classes}")
    args = {**entry.defaults, **kwargs}
    try:
        model = entry.builder(num_classes=int(num_classes), **args)
    except TypeError as exc:
        raise ModelError(f"bad arguments for model '{name}': {exc}") from exc
    model.model_name = name
    model.model_kwargs = args
    return model
