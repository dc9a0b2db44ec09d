"""Command-line options for a model of your own (``--model file.py:factory``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeseg.errors import ConfigError

ModelCodeOpt = Annotated[Optional[str], typer.Option(
    "--model-code", help="The code of a checkpoint of your own model (FILE.py:FACTORY or module:FACTORY, as "
                         "given to `train --model`): a checkpoint never imports code by itself.")]


def allow_model_code(spec: str | None) -> None:
    """The user named this code on the command line: its checkpoints may import it."""
    if spec:
        from edgeseg.models import own

        own.allow(spec)


def code_flag(model_name: str | None) -> str:
    """`` --model-code SPEC`` for the next commands of a model of your own, else nothing."""
    import shlex

    from edgeseg.models import own

    return f" --model-code {shlex.quote(model_name)}" if model_name and own.is_own_spec(model_name) else ""


def parse_floats(text: str | None, option: str) -> list[float] | None:
    """``"0.485,0.456,0.406"`` -> three floats; one line for anything else."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} '{text}' is not three comma-separated numbers (e.g. 0.485,0.456,0.406)") from None
    if len(values) != 3:
        raise ConfigError(f"{option} '{text}' has {len(values)} numbers: give three, one per channel")
    return values


def parse_output(text: str | None):
    """``--output 0`` (an index into a tuple) or ``--output out`` (a dict key)."""
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def own_model_kwargs(args: dict, classes_arg: str | None, output: str | None, size_divisor: int | None,
                     bgr: bool | None) -> dict:
    """The model kwargs of a model of your own: its factory's arguments and how it is adapted."""
    kwargs = {"args": args, "classes_arg": "num_classes" if classes_arg is None else classes_arg,
              "output": parse_output(output), "bgr": bool(bgr)}
    if size_divisor is not None:
        kwargs["size_divisor"] = size_divisor
    return kwargs


def model_input(mean: str | None, std: str | None, value_range: float | None) -> dict | None:
    """The model's own normalisation (mean, std in its channel order and value range), or None."""
    if mean is None and std is None and value_range is None:
        return None
    if value_range is not None and value_range not in (1.0, 255.0):
        raise ConfigError(f"--input-range must be 1 (pixels in 0..1) or 255 (0..255), got {value_range:g}")
    return {"mean": parse_floats(mean, "--input-mean"), "std": parse_floats(std, "--input-std"),
            "range": value_range or 1.0}
