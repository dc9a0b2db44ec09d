"""Command-line options for a model of your own (``--model file.py:factory``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.errors import ConfigError

ModelCodeOpt = Annotated[Optional[str], typer.Option(
    "--model-code", help="The code of a checkpoint of your own model (FILE.py:FACTORY or module:FACTORY, as "
                         "given to `train --model`): a checkpoint never imports code by itself.")]


NumClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", help="An ONNX model: its class count "
                                                                            "[--data's classes, else its output's channels].")]
ClassesOpt = Annotated[Optional[Path], typer.Option("--classes", help="An ONNX model: a JSON list of its class names.")]
MeanOpt = Annotated[Optional[str], typer.Option("--mean", help="Your model's input mean per channel, in its channel "
                                                               "order and --input-range [the data's].")]
StdOpt = Annotated[Optional[str], typer.Option("--std", help="Your model's input std per channel [the data's].")]
RangeOpt = Annotated[Optional[float], typer.Option("--input-range", help="Your model's pixel range: 1 (0..1) or "
                                                                         "255 (0..255) [1].")]
BgrOpt = Annotated[Optional[bool], typer.Option("--bgr", help="Your model takes B,G,R channels [R,G,B].")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", help="Your model's main head: an index into its "
                                                                   "outputs, or a name / dict key [the first, or 'out'].")]


def set_onnx_facts(source, data, num_classes, classes, mean, std, value_range, bgr, output, input_size=None) -> None:
    """What an ONNX file does not say, for :func:`edgeseg.checkpoints.load_model` to adapt it by;
    one line where these options are given for a source that is not an ONNX file."""
    from edgeseg.formats import onnx_model

    given = [v for v in (num_classes, classes, mean, std, value_range, bgr, output) if v is not None]
    if not (source and onnx_model.is_onnx_source(source)):
        if given:
            raise ConfigError("--num-classes, --classes, --mean, --std, --input-range, --bgr and --output describe an "
                              "ONNX model (MODEL.onnx): a checkpoint records them itself")
        return
    names = None
    if classes is not None:
        import json

        try:
            names = json.loads(Path(classes).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--classes '{classes}' is not a readable JSON file ({exc})") from None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"--classes '{classes}' must hold a JSON list of class names, e.g. [\"road\", \"car\"]")
    norm = model_input(mean, std, value_range) or {}
    onnx_model.set_options(data=str(data) if data else None, num_classes=num_classes, classes=names,
                           mean=norm.get("mean"), std=norm.get("std"), value_range=norm.get("range"), bgr=bgr,
                           output=parse_output(output), input_size=input_size)


ONNX_FACTS = {"num_classes": NumClassesOpt, "classes": ClassesOpt, "mean": MeanOpt, "std": StdOpt,
              "input_range": RangeOpt, "bgr": BgrOpt, "output": OutputOpt}


def takes_your_model(source, data: str | None = None, size: str | None = None):
    """Decorator for a command that loads a model: adds ``--model-code`` and the ONNX facts
    (:data:`ONNX_FACTS`) to its options, and before it runs allows the code and sets the facts
    for its source (the parameter named ``source``, or ``source(arguments)``)."""
    import functools
    import inspect
    import typing

    def deco(fn):
        hints = typing.get_type_hints(fn, include_extras=True)
        sig = inspect.signature(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
                 for name, ann in {"model_code": ModelCodeOpt, **ONNX_FACTS}.items()]

        @functools.wraps(fn)
        def command(*args, **kwargs):
            allow_model_code(kwargs.pop("model_code", None))
            facts = [kwargs.pop(name, None) for name in ONNX_FACTS]
            bound = sig.bind_partial(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            src = source(given) if callable(source) else given.get(source)
            set_onnx_facts(src, given.get(data) if data else None, *facts, given.get(size) if size else None)
            return fn(*args, **kwargs)

        command.__signature__ = sig.replace(parameters=own + added)
        command.__annotations__ = {**hints, **{p.name: p.annotation for p in added}}
        return command

    return deco


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
    return {"mean": parse_floats(mean, "--mean"), "std": parse_floats(std, "--std"),
            "range": value_range or 1.0}
