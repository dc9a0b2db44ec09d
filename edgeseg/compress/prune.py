"""Pruning: structured channel pruning (filters removed: the network really gets smaller
and faster) and NNCF's unstructured magnitude pruning (zeros in the weights: smaller when
compressed, no faster on dense CPU kernels).

Structured pruning uses ``torch-pruning`` (``torch_pruning.pruner.MagnitudePruner``): it
traces the model once to build the dependency graph (which convs, BatchNorms, residual
adds, concatenations and attention products must lose the same channels), ranks channel
groups by the L2 norm of their weights, and removes ``ratio`` of the channels of every
prunable layer, rounded to multiples of 8 (hardware vector widths). The classifier
convolutions (``num_classes`` outputs) and the input channels are never pruned. NNCF 3.x
has no structured pruning; ``nncf.prune`` is unstructured only
(``nncf.PruneMode.UNSTRUCTURED_MAGNITUDE_{LOCAL,GLOBAL}``, ``UNSTRUCTURED_REGULARIZATION_BASED``).

A pruned model's layer widths differ from the registry's. Checkpoints store the ordinary
state dict plus ``"pruning": {...}``; :func:`resize_to_state_dict` rebuilds the registry
model and resizes every Conv/BN/Linear/PReLU to the shapes in the state dict (no pickled
code in the checkpoint), after which ``load_state_dict`` works as usual.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.errors import ConfigError, MissingDependencyError

MODES = ("structured", "unstructured")


def check_ratio(ratio: float) -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"--prune must be a number between 0 and 0.9, got '{ratio}'") from None
    if not (0.0 < r <= 0.9):
        raise ConfigError(f"--prune must be a fraction of channels/weights in (0, 0.9], got {ratio}")
    return r


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"--prune-mode must be one of {', '.join(MODES)}, got '{mode}'")
    return mode


def _classifier_layers(model, num_classes: int) -> list[nn.Module]:
    return [m for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
            and (getattr(m, "out_channels", getattr(m, "out_features", None)) == num_classes)]


def _train_forward(model, x):
    # torch-pruning switches the model to eval() before tracing; trace the training graph
    # (a model of your own: with its side outputs, whose layers read the pruned features too).
    model.train()
    try:
        return model.forward_all(x) if hasattr(model, "forward_all") else model(x)
    finally:
        model.eval()


def check_pruned_runs(model, example_input: torch.Tensor) -> None:
    """One line naming the layer where a pruned model no longer runs (torch-pruning could not
    follow the graph there), instead of a shape error at the next use."""
    entered: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: entered.append(name))
             for name, m in model.named_modules() if name and not list(m.children())]
    try:
        with torch.no_grad():
            for training in (True, False):
                model.train(training)
                _train_forward(model, example_input) if training else model(example_input)
    except RuntimeError as exc:
        where = entered[-1] if entered else "?"
        raise ConfigError(f"structured pruning (torch-pruning) could not follow layer '{where}' of the model "
                          f"({str(exc).splitlines()[0][:160]}): keep it whole with --prune-ignore {where.rsplit('.', 1)[0]}, "
                          f"or use --prune-mode unstructured") from None
    finally:
        for h in hooks:
            h.remove()
        model.eval()


def prune_structured(model, example_input: torch.Tensor, ratio: float, *, round_to: int = 8,
                     ignore_modules=()) -> dict:
    """Remove ``ratio`` of the output channels of every prunable layer, in place.
    Returns ``{"params_before", "params_after", "channels": {layer: [before, after]}}``."""
    try:
        import torch_pruning as tp
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("torch_pruning", "compress", "structured pruning") from exc
    ratio = check_ratio(ratio)
    # Trace in training mode so that auxiliary heads (used only in training) are part of
    # the dependency graph and lose the same input channels as the features they read.
    model.train()
    example = example_input.expand(2, *example_input.shape[1:]).contiguous()
    before = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    ignored = _classifier_layers(model, model.num_classes)
    named = dict(model.named_modules())
    for name in ignore_modules:
        if name not in named:
            raise ConfigError(f"--prune-ignore: the model has no module '{name}'")
        ignored.append(named[name])
    p0 = sum(p.numel() for p in model.parameters())
    from edgeseg.native_logs import captured

    with captured():  # torch-pruning's tracing warnings
        pruner = tp.pruner.MagnitudePruner(model, example, forward_fn=_train_forward,
                                           importance=tp.importance.MagnitudeImportance(p=2),
                                           pruning_ratio=ratio, ignored_layers=ignored, round_to=round_to)
        with torch.no_grad():
            pruner.step()
    check_pruned_runs(model, example)
    after = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    changed = {n: [before[n], after[n]] for n in after if n in before and before[n] != after[n]}
    return {"mode": "structured", "ratio": ratio, "round_to": round_to, "tool": f"torch-pruning {tp.__version__}",
            "params_before": p0, "params_after": sum(p.numel() for p in model.parameters()),
            "channels": changed}


def prune_unstructured(model, example_input: torch.Tensor, ratio: float, *, scope: str = "global"):
    """NNCF magnitude pruning (binary masks on the weights); returns ``(masked_model, details)``.
    Strip the masks with :func:`strip_unstructured` after fine-tuning."""
    from edgeseg.compress.nncf_setup import nncf

    n = nncf()
    ratio = check_ratio(ratio)
    mode = n.PruneMode.UNSTRUCTURED_MAGNITUDE_GLOBAL if scope == "global" else n.PruneMode.UNSTRUCTURED_MAGNITUDE_LOCAL
    from edgeseg.native_logs import captured

    with captured():
        pm = n.prune(model, mode, ratio=ratio, examples_inputs=example_input)
    return pm, {"mode": "unstructured", "ratio": ratio, "tool": f"nncf.prune ({mode.value})"}


def strip_unstructured(model, example_input):
    """Fold the pruning masks into the weights (zeros) and drop NNCF's hooks."""
    from edgeseg.compress.nncf_setup import nncf

    from edgeseg.native_logs import captured

    n = nncf()
    stats = None
    with captured():
        try:
            stats = n.pruning_statistic(model)
        except Exception:  # pragma: no cover - statistics are informative only
            pass
        plain = n.strip(model, do_copy=True, strip_format=n.StripFormat.IN_PLACE)
    info = {}
    if stats is not None:
        info = {"pruned_fraction_prunable": float(stats.pruning_ratio),
                "pruned_fraction_all": float(stats.global_pruning_ratio)}
    return plain.eval(), info


def sparsity(model) -> float:
    """Fraction of zero weights over conv/linear weights."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / max(1, total)


def _set_module(model, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def resize_to_state_dict(model: nn.Module, state_dict: dict) -> nn.Module:
    """Resize Conv/BN/Linear/PReLU layers of ``model`` in place to the shapes in ``state_dict``
    (a channel-pruned model's), so that ``model.load_state_dict(state_dict)`` fits."""
    for name, mod in list(model.named_modules()):
        w = state_dict.get(f"{name}.weight")
        if isinstance(mod, nn.Conv2d) and w is not None and tuple(w.shape) != tuple(mod.weight.shape):
            out_ch = int(w.shape[0])
            if mod.groups == 1:
                groups, in_ch = 1, int(w.shape[1])
            elif mod.groups == mod.in_channels == mod.out_channels:  # depthwise stays depthwise
                groups, in_ch = out_ch, out_ch
            else:
                groups, in_ch = mod.groups, int(w.shape[1]) * mod.groups
            new = nn.Conv2d(in_ch, out_ch, mod.kernel_size, stride=mod.stride, padding=mod.padding,
                            dilation=mod.dilation, groups=groups, bias=mod.bias is not None,
                            padding_mode=mod.padding_mode)
            _set_module(model, name, new)
        elif isinstance(mod, nn.ConvTranspose2d) and w is not None and tuple(w.shape) != tuple(mod.weight.shape):
            g = mod.groups
            new = nn.ConvTranspose2d(int(w.shape[0]), int(w.shape[1]) * g, mod.kernel_size, stride=mod.stride,
                                     padding=mod.padding, output_padding=mod.output_padding, groups=g,
                                     bias=mod.bias is not None, dilation=mod.dilation)
            _set_module(model, name, new)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            rm = state_dict.get(f"{name}.running_mean")
            n = int((w if w is not None else rm).shape[0]) if (w is not None or rm is not None) else None
            if n is not None and n != mod.num_features:
                new = type(mod)(n, eps=mod.eps, momentum=mod.momentum, affine=mod.affine,
                                track_running_stats=mod.track_running_stats)
                _set_module(model, name, new)
        elif isinstance(mod, nn.Linear) and w is not None and tuple(w.shape) != tuple(mod.weight.shape):
            _set_module(model, name, nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=mod.bias is not None))
        elif isinstance(mod, nn.PReLU) and w is not None and w.numel() != mod.weight.numel():
            _set_module(model, name, nn.PReLU(int(w.numel())))
    return model
