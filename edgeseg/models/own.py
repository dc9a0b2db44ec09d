"""Your own model: an architecture from your code, adapted to edgeseg's model contract.

``--model path/to/file.py:factory`` or ``--model package.module:factory`` names a callable
that returns an ``nn.Module``; :func:`create_own_model` calls it with the class count under
the keyword the model uses and wraps the result in :class:`OwnModel`, the one place where the
model's conventions are adapted:

* its output: a tensor, or a tuple / list / dict whose main head is chosen by ``output``
  (index or key); auxiliary heads with one channel per class take part in training;
* logits at a fraction of the input are upsampled to the input (as the zoo models do);
* its input size rule (the stride), probed once or given as ``size_divisor``;
* its channel order (``bgr``); its mean, std and value range travel in the dataset
  descriptor (:func:`input_descriptor`), so every runtime normalises as the model expects.

Security: the spec is recorded in checkpoints, but a checkpoint never imports it by itself.
Code is imported only for a spec the user gave on the command line (:func:`allow`) or under
``--trust-model-code`` (:func:`trust_all`); see docs/failures.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import CheckpointError, ModelError
from edgeseg.models.base import SegmentationModel

#: the adapter's own settings in a checkpoint's model kwargs; the rest are the factory's
ADAPTER_KEYS = ("args", "classes_arg", "output", "size_divisor", "bgr")
_SPEC = re.compile(r"^(?P<where>[^:]+):(?P<attr>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_allowed: dict[str, str] = {}  # the factory's name -> the spec the user gave for it
_trust_all = False
PROBE_DIVISORS = (1, 2, 4, 8, 16, 32, 64)


def is_own_spec(name: str) -> bool:
    """Whether a model name is a code spec (``file.py:factory`` or ``module:factory``)."""
    return isinstance(name, str) and ":" in name


def parse_spec(spec: str) -> tuple[str, str, bool]:
    """``(file or module, attribute path, is_file)``; one line for a malformed spec."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise ModelError(f"--model '{spec}' is not FILE.py:FACTORY or package.module:FACTORY "
                         f"(e.g. --model models/mynet.py:build_model)")
    where, attr = m.group("where"), m.group("attr")
    is_file = where.endswith(".py")
    if not is_file and not _MODULE.match(where):
        raise ModelError(f"--model '{spec}': '{where}' is neither a .py file nor a dotted module name")
    return where, attr, is_file


def reset_trust() -> None:
    """Forget what was allowed (the CLI starts each command with nothing allowed)."""
    global _trust_all
    _allowed.clear()
    _trust_all = False


def allow(spec: str) -> None:
    """The user named this spec on the command line: its code may be imported, also for a
    checkpoint that records the same factory (perhaps under another path)."""
    _allowed[parse_spec(spec)[1]] = spec


def trust_all() -> None:
    """``--trust-model-code``: import whatever code a checkpoint names."""
    global _trust_all
    _trust_all = True


def resolve(recorded: str) -> str:
    """The spec to import for a model name recorded in a checkpoint (or given by the user)."""
    attr = parse_spec(recorded)[1]
    if attr in _allowed:
        return _allowed[attr]
    if _trust_all:
        return recorded
    raise CheckpointError(f"this checkpoint's model is code ('{recorded}'), which edgeseg never imports because "
                          f"a file names it: pass --model {recorded} (your copy of that code) if you trust it, "
                          f"or --trust-model-code")


def _import_file(path_text: str):
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"--model: no such file '{path_text}'")
    # one module name per file, so two files named model.py do not collide
    name = f"edgeseg_own_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # its siblings import as they do in their own repository (from layers import ...)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_factory(spec: str):
    """The callable a spec names, imported (the caller has checked it may be)."""
    where, attr, is_file = parse_spec(spec)
    try:
        module = _import_file(where) if is_file else importlib.import_module(where)
    except ModelError:
        raise
    except ModuleNotFoundError as exc:
        raise ModelError(f"--model '{spec}': cannot import '{exc.name}' ({exc}): install it or fix the path") from exc
    except Exception as exc:  # the user's code raised while importing
        raise ModelError(f"--model '{spec}': importing '{where}' raised {type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
            raise ModelError(f"--model '{spec}': '{where}' has no '{attr}' (callables there: "
                             f"{', '.join(names[:12]) or 'none'})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"--model '{spec}': '{attr}' is a {type(obj).__name__}, not a class or function")
    return obj


def _call_factory(spec: str, factory, num_classes: int, classes_arg: str, args: dict) -> nn.Module:
    try:
        if classes_arg == "":  # positional
            net = factory(num_classes, **args)
        elif classes_arg == "-":  # the factory takes no class count (its head is fixed)
            net = factory(**args)
        else:
            net = factory(**{classes_arg: num_classes, **args})
    except Exception as exc:
        hint = (" (pass --classes-arg NAME for the keyword your model uses, '' for positional, '-' for none)"
                if isinstance(exc, TypeError) else "")
        raise ModelError(f"--model '{spec}': the factory raised {type(exc).__name__}: {exc}{hint}") from exc
    if not isinstance(net, nn.Module):
        raise ModelError(f"--model '{spec}': the factory returned a {type(net).__name__}, not a torch nn.Module")
    return net


def describe_output(out) -> str:
    """What a model returned, for error messages."""
    if isinstance(out, torch.Tensor):
        return f"a {out.dim()}-D tensor of shape {tuple(out.shape)} ({str(out.dtype).replace('torch.', '')})"
    if isinstance(out, dict):
        return f"a dict with keys {list(out)[:8]}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}: " + ", ".join(describe_output(o) for o in out[:4])
    return f"a {type(out).__name__}"


class OwnModel(SegmentationModel):
    """A user's network behind edgeseg's contract: normalised RGB in, N x C x H x W logits out
    at the input size (a tuple with auxiliary heads in training mode)."""

    def __init__(self, net: nn.Module, num_classes: int, *, output=None, size_divisor: int = 1,
                 bgr: bool = False, spec: str = ""):
        super().__init__(num_classes)
        self.net = net
        self.output = output
        self.size_divisor = int(size_divisor)
        self.bgr = bool(bgr)
        self.spec = spec

    @property
    def display_name(self) -> str:
        """The user's name for the model in messages (its factory), not this wrapper's."""
        return f"{type(self.net).__name__} ({self.spec})" if self.spec else type(self.net).__name__

    def _heads(self, out) -> tuple[torch.Tensor, list]:
        """The main head and the other outputs of one forward pass."""
        if isinstance(out, torch.Tensor):
            return out, []
        if isinstance(out, dict):
            key = self.output if self.output is not None else ("out" if "out" in out else None)
            if key not in out:
                raise ModelError(f"model '{self.spec}' returned a dict with keys {list(out)}: choose the "
                                 f"main head with --output KEY")
            return out[key], [v for k, v in out.items() if k != key]
        if isinstance(out, (tuple, list)) and out:
            i = int(self.output or 0) if not isinstance(self.output, str) else None
            if i is None or not -len(out) <= i < len(out):
                raise ModelError(f"model '{self.spec}' returned {describe_output(out)}: --output must be an index "
                                 f"below {len(out)}")
            return out[i], [o for j, o in enumerate(out) if j != i % len(out)]
        raise ModelError(f"model '{self.spec}' returned {describe_output(out)}: it must return N x C x h x w "
                         f"logits (or a tuple, list or dict holding them)")

    def _check_logits(self, t, n: int) -> None:
        if not (isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[0] == n and t.shape[1] == self.num_classes
                and t.is_floating_point()):
            raise ModelError(f"model '{self.spec}' gave {describe_output(t)} as its main output, not N x "
                             f"{self.num_classes} x h x w float logits (one channel per class): check the class "
                             f"count argument (--classes-arg) and --output")

    def forward_features(self, x: torch.Tensor):
        size = x.shape[-2:]
        if self.bgr:
            x = x.flip(1)
        main, others = self._heads(self.net(x))
        if not torch.jit.is_tracing():  # checked when built and probed; an export traces the same graph
            self._check_logits(main, x.shape[0])
        main = self._to_input_size(main, size)
        if not self.training:
            return main
        aux = [self._to_input_size(o, size) for o in others
               if isinstance(o, torch.Tensor) and o.dim() == 4 and o.shape[1] == self.num_classes]
        return (main, *aux) if aux else main

    def forward_all(self, x: torch.Tensor) -> tuple:
        """Every tensor the network returns, side outputs included: what a tool that follows the
        graph from its outputs (torch-pruning) must see, or it leaves their layers unpruned."""
        if self.bgr:
            x = x.flip(1)
        out = self.net(x)
        items = out.values() if isinstance(out, dict) else (out if isinstance(out, (tuple, list)) else [out])
        return tuple(t for t in items if isinstance(t, torch.Tensor))

    @staticmethod
    def _to_input_size(t: torch.Tensor, size) -> torch.Tensor:
        # a static choice, also when traced: a network's output stride does not change with the size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            same = [int(v) for v in t.shape[-2:]] == [int(v) for v in size]
        if same:
            return t
        return F.interpolate(t, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)


def _error_at(model: OwnModel, h: int, w: int) -> Exception | None:
    """What running the model at h x w raised (None when it ran); a wrong output is not a size
    problem, so it is raised at once."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w))
        return None
    except ModelError:
        raise
    except Exception as exc:
        return exc


def smallest_divisor(error_at) -> tuple[int | None, Exception | None]:
    """The smallest of :data:`PROBE_DIVISORS` at which ``error_at(h, w)`` returns None at odd
    multiples of it (a stride-d network with skip connections breaks at sizes not divisible by
    d); ``(None, the last error)`` where none does."""
    last = None
    for d in PROBE_DIVISORS:
        errors = [error_at(d * a, d * b) for a, b in ((7, 9), (5, 11))]
        if not any(errors):
            return d, None
        last = next(e for e in errors if e)
    return None, last


def probe_size_divisor(model: OwnModel) -> int:
    """The stride the network needs, found by running it (:func:`smallest_divisor`)."""
    was = model.training
    model.eval()
    try:
        d, last = smallest_divisor(lambda h, w: _error_at(model, h, w))
    finally:
        model.train(was)
    if d is not None:
        return d
    first = str(last).strip().splitlines()[0][:200] if last else ""
    raise ModelError(f"model '{model.spec}' did not run at any size probed (odd multiples of "
                     f"{', '.join(map(str, PROBE_DIVISORS))}; last: {type(last).__name__}: {first}): check that it "
                     f"takes an N x 3 x H x W float image, or give --size-divisor N")


def create_own_model(spec: str, num_classes: int, *, args: dict | None = None, classes_arg: str = "num_classes",
                     output=None, size_divisor: int | None = None, bgr: bool = False) -> OwnModel:
    """Import (if allowed), build and adapt a user's model; probes the stride when not given."""
    target = resolve(spec)
    factory = load_factory(target)
    net = _call_factory(target, factory, int(num_classes), classes_arg, dict(args or {}))
    model = OwnModel(net, num_classes, output=output, size_divisor=size_divisor or 1, bgr=bgr, spec=spec)
    if size_divisor is None:
        model.size_divisor = probe_size_divisor(model)
    else:
        if int(size_divisor) < 1:
            raise ModelError(f"--size-divisor must be at least 1, got {size_divisor}")
    model.model_kwargs = {"args": dict(args or {}), "classes_arg": classes_arg, "output": output,
                          "size_divisor": model.size_divisor, "bgr": bool(bgr)}
    return model


def input_descriptor(info, mean=None, std=None, value_range: float = 1.0, bgr: bool = False):
    """The dataset descriptor with the model's own normalisation.

    ``mean`` and ``std`` are per channel, in the model's channel order (B,G,R when ``bgr``) and
    value range (``value_range`` 255 for a 0..255 model); they are stored in RGB order and the
    0..1 scale edgeseg normalises in, where ``(x / 255 - mean) / std`` equals the model's own
    maths. Left out: the data's mean and std for a 0..1 model, none (0 and 1) for a 0..255 one."""
    from dataclasses import replace

    if mean is None and std is None and value_range == 1.0:
        return info
    r = float(value_range)
    for name, vals in (("mean", mean), ("std", std)):
        if vals is not None and (len(vals) != 3 or not all(v == v and abs(v) != float("inf") for v in vals)):
            raise ModelError(f"--input-{name} needs three finite numbers, one per channel, got {list(vals)}")
    order = (lambda v: list(v)[::-1]) if bgr else list
    if mean is not None:
        m = [float(v) / r for v in order(mean)]
    else:
        m = [0.0] * 3 if r != 1.0 else list(info.mean)
    if std is not None:
        s = [float(v) / r for v in order(std)]
    else:
        s = [1.0 / r] * 3 if (r != 1.0 or mean is not None) else list(info.std)
    if min(s) <= 0:
        raise ModelError(f"--std must be above 0 for every channel, got {list(std or s)}")
    return replace(info, mean=tuple(m), std=tuple(s))


def load_plain_weights(model: OwnModel, state: dict, source) -> None:
    """Load a plain state dict of the user's network (not an edgeseg checkpoint) into it; keys
    missing or extra, or of another shape, are one line naming the first few."""
    mine = model.net.state_dict()
    missing = [k for k in mine if k not in state]
    extra = [k for k in state if k not in mine]
    shapes = [f"{k} {tuple(state[k].shape)} (the model has {tuple(v.shape)})" for k, v in mine.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                for what, keys in (("missing", missing), ("unexpected", extra), ("other shape", shapes)) if keys]
    if problems:
        raise CheckpointError(f"weights '{source}' do not fit {model.spec} with {model.num_classes} classes: "
                              f"{'; '.join(problems)}: give the weights of the same architecture and class count "
                              f"(--model-arg, --classes-arg)")
    model.net.load_state_dict(state)
