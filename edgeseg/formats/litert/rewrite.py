"""Export-time graph rewrites for the full-int8 TFLite (Coral) export.

Each rewrite works on the ``torch.export`` GraphModule of the model (never on the model
or its weights), keeps the fp32 math identical (checked by :func:`max_abs_diff`), and
exists because the unrewritten pattern converts badly with litert-torch or does not map
on the Edge TPU:

``sink_spatial_expand``
    ``v.expand_as(x)`` of a global-context vector ``v`` (``N x C x 1 x 1``, e.g. from
    ``x.mean((2, 3), keepdim=True)``) followed by per-pixel ops (1x1 stride-1 unpadded
    conv, eval BatchNorm, ReLU / sigmoid / hardtanh ...) and a broadcasting ``add`` /
    ``mul`` with a full map. litert-torch 0.10 with ``to_channel_last_io`` converts the
    expand to ``RESHAPE -> [N, C, 1, 1]`` (NCHW order) followed by
    ``BROADCAST_TO [N, H, W, C]`` (NHWC order), which LiteRT refuses at
    ``allocate_tensors`` ("Output shape must be broadcastable from input shape";
    BiSeNetV1's global-context branch). Per-pixel ops on a spatially constant map give
    the same value at every pixel, so they are run on the 1x1 vector and the final
    ``add``/``mul`` broadcasts it: no expand, no BROADCAST_TO, fewer MACs.
``zero_pad_nonneg_maxpool``
    ``max_pool2d(x, k, s, padding=p)`` pads with -inf, which converts to ``PADV2``
    (not on the Edge TPU's op list: the graph leaves the TPU there). When ``x`` is
    provably non-negative (it is produced by ``relu`` / ``relu6`` (``hardtanh(0, 6)``) /
    ``clamp(min>=0)`` / ``sigmoid`` ...), zero padding gives the same maximum because
    every pooling window (``p <= k // 2``, dilation 1) holds at least one real pixel,
    which is >= 0. Rewritten to ``constant_pad_nd(x, p, 0)`` + ``max_pool2d(padding=0)``
    -> ``PAD`` + ``MAX_POOL_2D``, both on the Edge TPU. Inputs that cannot be shown
    non-negative are left alone (the Edge TPU check reports their PADV2).
``unpad_conv_transpose``
    ``conv_transpose2d(x, padding=p, output_padding=o)`` with ``p > 0``: litert-torch 0.10
    cannot legalize it ("failed to legalize operation 'mhlo.convolution'", ENet's
    stride-2 3x3 up-convolutions with ``padding=1``). A transposed convolution with padding
    ``p`` is the unpadded one cropped by ``p`` at the top/left, so it is rewritten to
    ``conv_transpose2d(padding=0, output_padding=0)`` (a VALID ``TRANSPOSE_CONV``) + two
    slices (``STRIDED_SLICE``). Exact when ``o <= p`` (every output pixel lies inside the
    unpadded result); other cases are left alone.
``explicit_pad_shared_input_conv``
    A padded ``conv2d`` with stride > 1 whose input also feeds a max-pool (ENet's initial
    block: the image goes to a stride-2 conv and a max-pool, then both are concatenated). The converter adds a ``PAD``
    in front of such a conv and gives it the conv's input scale while its input carries
    the other branch's scale, which the int8 ``PAD`` cannot do ("'tfl.pad' op quantization
    parameters violate the same scale constraint"). An explicit ``constant_pad_nd`` +
    ``conv2d(padding=0)`` is quantized by PT2E itself (the pad shares its input's scale).
"""

from __future__ import annotations

import contextlib
import logging

log = logging.getLogger("edgeseg.formats")


def _aten():
    import torch

    return torch.ops.aten


def _shape(node):
    val = node.meta.get("val") if hasattr(node, "meta") else None
    if val is None and getattr(node, "op", None) == "get_attr":  # a parameter / buffer
        val = node.graph.owning_module
        for part in node.target.split("."):
            val = getattr(val, part, None)
    return tuple(int(d) for d in val.shape) if val is not None and hasattr(val, "shape") else None


def _arg(node, index, name, default):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _pair(v, n=2):
    return list(v) * n if isinstance(v, (list, tuple)) and len(v) == 1 else (list(v) if isinstance(v, (list, tuple))
                                                                            else [v] * n)


def _nonneg_producer(node) -> bool:
    """True when ``node``'s output is >= 0 by construction (the op that makes it says so)."""
    aten = _aten()
    if getattr(node, "op", None) != "call_function":
        return False
    t = node.target
    if t in (aten.relu.default, aten.relu_.default, aten.sigmoid.default, aten.sigmoid_.default,
             aten.hardsigmoid.default, aten.hardsigmoid_.default, aten.relu6.default):
        return True
    if t in (aten.hardtanh.default, aten.hardtanh_.default):
        return float(_arg(node, 1, "min_val", -1.0)) >= 0
    if t in (aten.clamp.default, aten.clamp_.default, aten.clamp_min.default, aten.clamp_min_.default):
        lo = _arg(node, 1, "min", None)
        return lo is not None and float(lo) >= 0
    return False


def _pointwise_in_space(node, src) -> bool:
    """``node`` applied to ``src`` (an N x C x H x W map constant over H, W) gives a map that
    is again constant over H, W and equals the op applied to one pixel."""
    aten = _aten()
    if node.op != "call_function" or not node.args or node.args[0] is not src:
        return False
    t = node.target
    if t in (aten.relu.default, aten.relu_.default, aten.sigmoid.default, aten.sigmoid_.default,
             aten.hardtanh.default, aten.hardtanh_.default, aten.hardsigmoid.default, aten.hardswish.default,
             aten.relu6.default, aten.silu.default, aten.gelu.default, aten.tanh.default, aten.clamp.default):
        return all(getattr(a, "op", None) is None for a in node.args[1:])
    if t == aten.batch_norm.default:
        return _arg(node, 5, "training", True) is False
    if t == aten.conv2d.default:
        w = _shape(node.args[1]) if len(node.args) > 1 else None
        stride = _pair(_arg(node, 3, "stride", 1))
        padding = _arg(node, 4, "padding", 0)
        if isinstance(padding, str):
            padding = [0, 0] if padding == "valid" else padding
        return (w is not None and w[-2:] == (1, 1) and stride == [1, 1]
                and not isinstance(padding, str) and _pair(padding) == [0, 0])
    return False


def sink_spatial_expand(gm) -> int:
    """Remove ``expand``/``expand_as`` of N x C x 1 x 1 maps that only feed per-pixel ops and
    end in a broadcasting ``add``/``mul``; returns how many were removed."""
    aten = _aten()
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.expand.default, aten.expand_as.default):
            continue
        src = node.args[0]
        small, full = _shape(src), _shape(node)
        if small is None or full is None or len(small) != 4 or small[2:] != (1, 1) or small[:2] != full[:2]:
            continue
        cur = node
        while len(cur.users) == 1 and _pointwise_in_space(next(iter(cur.users)), cur):
            cur = next(iter(cur.users))
        if len(cur.users) != 1:
            continue
        end = next(iter(cur.users))
        if end.op != "call_function" or end.target not in (aten.add.Tensor, aten.add_.Tensor, aten.mul.Tensor,
                                                         aten.mul_.Tensor, aten.sub.Tensor):
            continue
        others = [a for a in end.args[:2] if a is not cur]
        if len(others) != 1 or _shape(others[0]) != _shape(cur):
            continue  # the other operand must carry the full shape for the broadcast
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        done += 1
    if done:
        gm.graph.lint()
        gm.recompile()
    return done


_TRACE_META = ("nn_module_stack", "stack_trace", "source_fn_stack")


def _swap(gm, node, helpers, result) -> None:
    """Replace ``node`` by ``result`` (which takes its metadata); ``helpers``, the other new
    nodes, get its source location so converter messages still name the layer."""
    for new in helpers:
        new.meta.update({k: v for k, v in node.meta.items() if k in _TRACE_META})
    result.meta.update(node.meta)
    node.replace_all_uses_with(result)
    gm.graph.erase_node(node)


def _recompiled(gm, done: int) -> int:
    if done:
        gm.graph.lint()
        gm.recompile()
    return done


def zero_pad_nonneg_maxpool(gm) -> int:
    """``max_pool2d(x, padding=p)`` of a non-negative ``x`` -> ``constant_pad_nd(x, p, 0)`` +
    ``max_pool2d(padding=0)``; returns how many pools were rewritten."""
    aten = _aten()
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != aten.max_pool2d.default:
            continue
        x = node.args[0]
        kernel = _pair(_arg(node, 1, "kernel_size", None))
        stride = _arg(node, 2, "stride", [])
        stride = kernel if not stride else _pair(stride)
        padding = _pair(_arg(node, 3, "padding", 0))
        dilation = _pair(_arg(node, 4, "dilation", 1))
        ceil_mode = bool(_arg(node, 5, "ceil_mode", False))
        if padding == [0, 0] or dilation != [1, 1] or ceil_mode or not _nonneg_producer(x):
            continue
        if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
            continue
        ph, pw = padding
        with gm.graph.inserting_before(node):
            pad = gm.graph.call_function(aten.constant_pad_nd.default, (x, [pw, pw, ph, ph], 0.0))
            pool = gm.graph.call_function(aten.max_pool2d.default, (pad, kernel, stride, [0, 0], [1, 1], False))
        _swap(gm, node, [pad], pool)
        done += 1
    return _recompiled(gm, done)


def unpad_conv_transpose(gm) -> int:
    """``conv_transpose2d(padding=p, output_padding=o)``, ``0 <= o <= p``, ``p > 0`` ->
    ``conv_transpose2d(padding=0)`` cropped to the same output; returns how many were rewritten."""
    aten = _aten()
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != aten.conv_transpose2d.input:
            continue
        x, w = node.args[0], node.args[1]
        bias = _arg(node, 2, "bias", None)
        stride = _pair(_arg(node, 3, "stride", 1))
        padding = _pair(_arg(node, 4, "padding", 0))
        out_pad = _pair(_arg(node, 5, "output_padding", 0))
        groups = _arg(node, 6, "groups", 1)
        dilation = _pair(_arg(node, 7, "dilation", 1))
        shape = _shape(node)
        if padding == [0, 0] or shape is None or out_pad[0] > padding[0] or out_pad[1] > padding[1]:
            continue
        (ph, pw), (h, w_) = padding, shape[2:]
        with gm.graph.inserting_before(node):
            full = gm.graph.call_function(aten.conv_transpose2d.input,
                                          (x, w, bias, stride, [0, 0], [0, 0], groups, dilation))
            rows = gm.graph.call_function(aten.slice.Tensor, (full, 2, ph, ph + h))
            crop = gm.graph.call_function(aten.slice.Tensor, (rows, 3, pw, pw + w_))
        _swap(gm, node, [full, rows], crop)
        done += 1
    return _recompiled(gm, done)


def explicit_pad_shared_input_conv(gm) -> int:
    """Padded stride>1 ``conv2d`` of an input that a max-pool also reads -> ``constant_pad_nd`` +
    ``conv2d(padding=0)``; returns how many convs were rewritten."""
    aten = _aten()
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != aten.conv2d.default:
            continue
        x = node.args[0]
        stride = _pair(_arg(node, 3, "stride", 1))
        padding = _arg(node, 4, "padding", 0)
        pools = (aten.max_pool2d.default, aten.max_pool2d_with_indices.default)
        if isinstance(padding, str) or max(stride) < 2 or not any(
                u is not node and u.op == "call_function" and u.target in pools for u in x.users):
            continue
        padding = _pair(padding)
        if padding == [0, 0]:
            continue
        ph, pw = padding
        weight, bias = node.args[1], _arg(node, 2, "bias", None)
        dilation, groups = _pair(_arg(node, 5, "dilation", 1)), _arg(node, 6, "groups", 1)
        with gm.graph.inserting_before(node):
            pad = gm.graph.call_function(aten.constant_pad_nd.default, (x, [pw, pw, ph, ph], 0.0))
            conv = gm.graph.call_function(aten.conv2d.default, (pad, weight, bias, stride, [0, 0], dilation, groups))
        _swap(gm, node, [pad], conv)
        done += 1
    return _recompiled(gm, done)


@contextlib.contextmanager
def nhwc_constant_pad():
    """Let litert-torch's NHWC layout pass keep ``constant_pad_nd`` in NHWC.

    litert-torch 0.10 has NHWC rewriters for convs, pools, reflection/replication pads,
    but none for ``aten.constant_pad_nd``: a zero pad between NHWC ops is wrapped in
    TRANSPOSE -> PAD -> TRANSPOSE. This registers (for the duration of the block) a
    rewriter that permutes the pad widths to NHWC (``[l, r, t, b]`` over W, H ->
    ``[0, 0, l, r, t, b]`` over C, W, H). It uses the pass's registry
    (``litert_torch._convert.fx_passes.optimize_layout_transposes_pass.layout_rewrite.rewriters``),
    a private module: where it is missing the block does nothing and the pad keeps its
    transposes (correct, just slower)."""
    try:
        from litert_torch._convert.fx_passes.optimize_layout_transposes_pass import layout_rewrite
    except ImportError:  # pragma: no cover - other litert-torch versions
        yield False
        return
    aten = _aten()
    registry = layout_rewrite.rewriters
    targets = [aten.constant_pad_nd.default, aten.constant_pad_nd]
    saved = {t: registry[t] for t in targets if t in registry}

    def rewriter(node):
        def pad_nhwc(x, pad, value=0.0):
            pad = list(pad) + [0] * (8 - len(pad))           # NCHW pairs from the last dim: W, H, C, N
            w, h, c, n = pad[0:2], pad[2:4], pad[4:6], pad[6:8]
            return aten.constant_pad_nd.default(x, c + w + h + n, value)  # NHWC pairs: C, W, H, N

        node.target = pad_nhwc

    for t in targets:
        registry[t] = rewriter
    try:
        yield True
    finally:
        for t in targets:
            if t in saved:
                registry[t] = saved[t]
            else:
                registry.pop(t, None)


REWRITES = {"sink_spatial_expand": sink_spatial_expand, "zero_pad_nonneg_maxpool": zero_pad_nonneg_maxpool,
            "unpad_conv_transpose": unpad_conv_transpose,
            "explicit_pad_shared_input_conv": explicit_pad_shared_input_conv}


def apply_rewrites(gm) -> dict:
    """Apply every rewrite in :data:`REWRITES` in place; returns ``{name: count}``."""
    counts = {name: fn(gm) for name, fn in REWRITES.items()}
    for name, n in counts.items():
        if n:
            log.info("export rewrite %s: %d site(s)", name, n)
    return counts


def max_abs_diff(a, b, inputs) -> float:
    """Largest absolute output difference of two modules over ``inputs`` (NCHW tensors)."""
    import torch

    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            worst = max(worst, float((a(x) - b(x)).abs().max()))
    return worst


__all__ = ["apply_rewrites", "sink_spatial_expand", "zero_pad_nonneg_maxpool", "unpad_conv_transpose",
           "explicit_pad_shared_input_conv", "max_abs_diff",
           "nhwc_constant_pad", "REWRITES"]
