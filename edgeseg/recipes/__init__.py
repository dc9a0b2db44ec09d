"""Training recipes as data: one YAML file per recipe, the fields of ``TrainConfig``.

``edgeseg train --recipe camvid-bisenetv1-cpu --data DIR`` reproduces a zoo model; any
option given on the command line overrides the recipe's value.
"""

from __future__ import annotations

import difflib
from importlib import resources

import yaml

from edgeseg.errors import ConfigError


def list_recipes() -> list[str]:
    files = resources.files(__package__).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def load_recipe(name: str) -> dict:
    """The settings of a recipe (TrainConfig fields, plus a ``description``)."""
    names = list_recipes()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown recipe '{name}': {hint}recipes: {', '.join(names)}")
    text = resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    settings = yaml.safe_load(text) or {}
    for key in ("img_size", "scale"):
        if key in settings and settings[key] is not None:
            settings[key] = tuple(settings[key])
    return settings
