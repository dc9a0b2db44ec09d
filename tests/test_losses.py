import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.errors import ConfigError, DataError
from edgeseg.losses import (
    BoundaryLoss,
    CombinedLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    OhemCELoss,
    build_loss,
    class_weights,
    parse_loss_spec,
    signed_distance_map,
)

C = 4


def _batch(seed=0, n=2, c=C, h=12, w=10, ignore_frac=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g) * 2
    target = torch.randint(0, c, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < ignore_frac] = 255
    return logits, target


def _one_hot_logits(target, c=C, margin=30.0):
    safe = target.clone()
    safe[safe == 255] = 0
    return F.one_hot(safe, c).permute(0, 3, 1, 2).float() * margin


ALL_LOSSES = {
    "ce": lambda: CrossEntropyLoss(),
    "wce": lambda: CrossEntropyLoss(weight=[1.0, 2.0, 0.5, 3.0]),
    "focal": lambda: FocalLoss(gamma=2.0),
    "focal_alpha": lambda: FocalLoss(gamma=2.0, alpha=[0.25, 0.5, 1.0, 1.0]),
    "dice": lambda: DiceLoss(),
    "boundary": lambda: BoundaryLoss(),
    "ohem": lambda: OhemCELoss(thresh=0.7, min_kept=10),
}


# ---------------------------------------------------------------------------
# cross-entropy and class weights
# ---------------------------------------------------------------------------


def test_ce_matches_torch_with_ignore():
    logits, target = _batch()
    ref = F.cross_entropy(logits, target, ignore_index=255)
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(ref.item(), rel=1e-6)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    ref_w = F.cross_entropy(logits, target, weight=w, ignore_index=255)
    got = CrossEntropyLoss(weight=w.numpy())(logits, target)
    assert got.item() == pytest.approx(ref_w.item(), rel=1e-6)


def test_custom_ignore_index_and_all_ignored():
    logits, target = _batch()
    t2 = target.clone()
    t2[t2 == 255] = -1
    ref = F.cross_entropy(logits, target, ignore_index=255)
    assert CrossEntropyLoss(ignore_index=-1)(logits, t2).item() == pytest.approx(ref.item(), rel=1e-6)
    x = logits.clone().requires_grad_(True)
    all_ignored = torch.full_like(target, 255)
    for name, make in ALL_LOSSES.items():
        v = make()(x, all_ignored)
        assert v.item() == 0.0, name
        v.backward()
        assert torch.isfinite(x.grad).all()


def test_class_weights_hand_values():
    counts = np.array([700.0, 200.0, 100.0, 0.0])
    p = counts / 1000.0
    # enet: 1 / ln(1.02 + p)
    np.testing.assert_allclose(
        class_weights(counts, "enet"),
        [1 / math.log(1.72), 1 / math.log(1.22), 1 / math.log(1.12), 1 / math.log(1.02)],
    )
    # dabnet: 1 / ln(1.10 + p)
    np.testing.assert_allclose(
        class_weights(counts, "dabnet"),
        [1 / math.log(1.80), 1 / math.log(1.30), 1 / math.log(1.20), 1 / math.log(1.10)],
    )
    # inverse: 1/p over present classes = [10/7, 5, 10], mean 1 after normalisation
    inv = np.array([10 / 7, 5.0, 10.0])
    np.testing.assert_allclose(class_weights(counts, "inverse"), list(inv / inv.mean()) + [0.0])
    assert class_weights(counts, "inverse")[:3].mean() == pytest.approx(1.0)
    # median: median(p present) = 0.2 -> 0.2/p
    np.testing.assert_allclose(class_weights(counts, "median"), [0.2 / 0.7, 1.0, 2.0, 0.0])
    # balanced counts give equal weights
    np.testing.assert_allclose(class_weights([5, 5, 5], "inverse"), [1, 1, 1])
    with pytest.raises(ConfigError, match="inverse"):
        class_weights(counts, "log")
    with pytest.raises(DataError):
        class_weights([-1, 2], "enet")
    with pytest.raises(DataError):
        class_weights([0, 0], "enet")


# ---------------------------------------------------------------------------
# focal, dice, boundary, ohem
# ---------------------------------------------------------------------------


def test_focal_gamma0_equals_ce_and_downweights_easy_pixels():
    logits, target = _batch(1)
    ce = F.cross_entropy(logits, target, ignore_index=255)
    assert FocalLoss(gamma=0)(logits, target).item() == pytest.approx(ce.item(), rel=1e-5)
    assert FocalLoss(gamma=2)(logits, target).item() < ce.item()
    # scalar alpha scales the loss
    assert FocalLoss(gamma=0, alpha=0.25)(logits, target).item() == pytest.approx(0.25 * ce.item(), rel=1e-5)
    # per-class alpha: per-pixel weighting normalised by the pixel count
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.4])
    valid = target != 255
    per_pix = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    ref = (per_pix * alpha[target.clamp(max=C - 1)])[valid].mean()
    assert FocalLoss(gamma=0, alpha=alpha)(logits, target).item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ConfigError):
        FocalLoss(gamma=-1)


def test_dice_perfect_and_wrong():
    _, target = _batch(2)
    perfect = _one_hot_logits(target)
    assert DiceLoss()(perfect, target).item() == pytest.approx(0.0, abs=1e-4)
    wrong_target = target.clone()
    valid = target != 255
    wrong_target[valid] = (target[valid] + 1) % C
    wrong = _one_hot_logits(wrong_target)
    assert DiceLoss()(wrong, target).item() > 0.95
    assert DiceLoss(smooth=0.0)(wrong, target).item() == pytest.approx(1.0, abs=1e-6)


def test_dice_hand_case():
    # 1 x 2 x 1 x 2, probs exactly [1,0] / [0.5,0.5]
    logits = torch.tensor([[[[100.0, 0.0]], [[0.0, 0.0]]]])
    target = torch.tensor([[[0, 1]]])
    # class 0: inter 1, sum p 1.5, sum g 1 -> dice 2/2.5; class 1: inter .5, sum p .5, g 1 -> 1/1.5
    expected = 1 - (2 / 2.5 + 1 / 1.5) / 2
    assert DiceLoss(smooth=0)(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_signed_distance_map_hand_case():
    t = np.zeros((1, 7), dtype=np.int64)
    t[0, 2:5] = 1
    d = signed_distance_map(t, 3)
    np.testing.assert_allclose(d[1, 0], [2, 1, 0, -1, 0, 1, 2])
    np.testing.assert_allclose(d[0, 0], [-1, 0, 1, 2, 1, 0, -1])  # edges: 2 inside -> -(2-1)
    np.testing.assert_allclose(d[2], 0)  # absent class
    np.testing.assert_allclose(signed_distance_map(np.zeros((3, 3), int), 2)[0], 0)  # class covers all


def _square(shape=(24, 24), top=6, left=6, size=10):
    t = torch.zeros((1,) + shape, dtype=torch.long)
    t[0, top:top + size, left:left + size] = 1
    return t


def test_boundary_loss_prefers_matching_prediction():
    target = _square()
    match = _one_hot_logits(_square(), c=2, margin=5)
    shift2 = _one_hot_logits(_square(left=8), c=2, margin=5)
    shift5 = _one_hot_logits(_square(left=11), c=2, margin=5)
    bl = BoundaryLoss()
    a, b, c = bl(match, target).item(), bl(shift2, target).item(), bl(shift5, target).item()
    assert a < b < c
    # precomputed distance maps give the same value
    dist = torch.from_numpy(signed_distance_map(target.numpy(), 2))
    assert bl(match, target, dist=dist).item() == pytest.approx(a)


def test_ohem_behaviour_and_min_kept():
    logits, target = _batch(3)
    ce = F.cross_entropy(logits, target, ignore_index=255).item()
    valid = target != 255
    per_pix = F.cross_entropy(logits, target, ignore_index=255, reduction="none")[valid]
    n = int(valid.sum())
    assert OhemCELoss(thresh=0.7)(logits, target).item() >= ce - 1e-6
    # thresh 1.0 with min_kept 0 keeps every pixel with p < 1, i.e. all -> CE
    assert OhemCELoss(thresh=1.0, min_kept=0)(logits, target).item() == pytest.approx(ce, rel=1e-5)
    # min_kept larger than the number of valid pixels -> all pixels -> CE
    assert OhemCELoss(thresh=1e-6, min_kept=10 ** 9)(logits, target).item() == pytest.approx(ce, rel=1e-5)
    # a tiny threshold keeps exactly the min_kept hardest pixels
    k = 7
    ref = per_pix.topk(k).values.mean().item()
    assert OhemCELoss(thresh=1e-6, min_kept=k)(logits, target).item() == pytest.approx(ref, rel=1e-5)
    # threshold rule: pixels with p(true) < thresh
    thresh = 0.3
    hard = per_pix[per_pix > -math.log(thresh)]
    assert hard.numel() > 5
    got = OhemCELoss(thresh=thresh, min_kept=5)(logits, target).item()
    assert got == pytest.approx(hard.mean().item(), rel=1e-5)
    # confident, correct predictions: nothing is hard, min_kept pixels still kept
    easy = _one_hot_logits(target)
    assert OhemCELoss(thresh=0.7, min_kept=3)(easy, target).item() == pytest.approx(0.0, abs=1e-6)
    assert n > 0
    with pytest.raises(ConfigError):
        OhemCELoss(thresh=1.5)


# ---------------------------------------------------------------------------
# properties shared by every loss
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_ignored_pixels_do_not_matter(name):
    logits, target = _batch(4)
    loss = ALL_LOSSES[name]()
    a = loss(logits, target)
    changed = logits.clone()
    ign = (target == 255).unsqueeze(1).expand_as(changed)
    changed[ign] = torch.randn(int(ign.sum())) * 50
    b = loss(changed, target)
    assert a.item() == pytest.approx(b.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_finite_gradients(name):
    logits, target = _batch(5)
    x = logits.clone().requires_grad_(True)
    v = ALL_LOSSES[name]()(x, target)
    assert v.dim() == 0 and torch.isfinite(v)
    v.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    # ignored pixels receive no gradient
    ign = (target == 255).unsqueeze(1).expand_as(x)
    assert x.grad[ign].abs().max() == 0


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_bad_labels_raise_data_error(name):
    logits, target = _batch(6)
    target[0, 0, 0] = 7
    with pytest.raises(DataError, match="7"):
        ALL_LOSSES[name]()(logits, target)
    with pytest.raises(DataError):
        ALL_LOSSES[name]()(logits, target.float())


def test_low_resolution_logits_are_upsampled():
    logits, target = _batch(7, h=16, w=16)
    small = logits[:, :, ::4, ::4]
    ref = F.cross_entropy(F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False),
                          target, ignore_index=255)
    assert CrossEntropyLoss()(small, target).item() == pytest.approx(ref.item(), rel=1e-6)
    # N x 1 x H x W target is accepted
    assert CrossEntropyLoss()(logits, target.unsqueeze(1)).item() == pytest.approx(
        F.cross_entropy(logits, target, ignore_index=255).item(), rel=1e-6)


# ---------------------------------------------------------------------------
# spec parsing and build_loss
# ---------------------------------------------------------------------------


def test_parse_loss_spec():
    assert parse_loss_spec("ce") == [(1.0, "ce", None)]
    assert parse_loss_spec("ce+0.5*dice") == [(1.0, "ce", None), (0.5, "dice", None)]
    assert parse_loss_spec(" ohem + 0.4 * boundary ") == [(1.0, "ohem", 0.7), (0.4, "boundary", None)]
    assert parse_loss_spec("wce:enet") == [(1.0, "wce", "enet")]
    assert parse_loss_spec("wce") == [(1.0, "wce", "inverse")]
    assert parse_loss_spec("wce:median+dice") == [(1.0, "wce", "median"), (1.0, "dice", None)]
    assert parse_loss_spec("focal:2") == [(1.0, "focal", 2.0)]
    assert parse_loss_spec("focal") == [(1.0, "focal", 2.0)]
    assert parse_loss_spec("ohem:0.9") == [(1.0, "ohem", 0.9)]
    assert parse_loss_spec("2*CE+1e-1*Dice") == [(2.0, "ce", None), (0.1, "dice", None)]
    assert parse_loss_spec("wce : ENet") == [(1.0, "wce", "enet")]


@pytest.mark.parametrize("spec, match", [
    ("", "empty"),
    ("   ", "empty"),
    ("xent", "unknown loss term 'xent'"),
    ("ce+lovasz", "unknown loss term 'lovasz'"),
    ("ce+", "empty term"),
    ("abc*dice", "weight 'abc'"),
    ("-1*dice", "weight"),
    ("0.5**dice", "WEIGHT"),
    ("inf*dice", "weight"),
    ("wce:log", "wce method"),
    ("focal:x", "focal gamma"),
    ("ohem:1.5", "ohem threshold"),
    ("ohem:", "empty"),
    ("dice:3", "takes no"),
    ("ce dice", "cannot read term 'ce dice'"),
])
def test_parse_errors(spec, match):
    with pytest.raises(ConfigError, match=match) as ei:
        parse_loss_spec(spec)
    assert "wce[:inverse|median|enet|dabnet]" in str(ei.value)  # names the valid terms


def test_build_loss_specs_and_last_terms():
    logits, target = _batch(8)
    counts = np.array([100, 50, 25, 5])
    for spec in ["ce", "ce+0.5*dice", "ohem+0.4*boundary", "wce:enet", "wce:median+dice",
                 "focal:2", "ohem:0.7", "wce+focal:0+dice+boundary+ohem"]:
        loss = build_loss(spec, C, class_counts=counts)
        assert isinstance(loss, CombinedLoss)
        x = logits.clone().requires_grad_(True)
        v = loss(x, target)
        v.backward()
        assert torch.isfinite(v) and torch.isfinite(x.grad).all()
        terms = loss.last_terms
        assert terms["total"] == pytest.approx(v.item())
        assert all(isinstance(t, float) for t in terms.values())
    loss = build_loss("ce+0.5*dice", C)
    v = loss(logits, target)
    t = loss.last_terms
    assert set(t) == {"ce", "dice", "total"}
    assert t["ce"] == pytest.approx(F.cross_entropy(logits, target, ignore_index=255).item(), rel=1e-6)
    assert t["dice"] == pytest.approx(DiceLoss()(logits, target).item(), rel=1e-6)
    assert v.item() == pytest.approx(t["ce"] + 0.5 * t["dice"], rel=1e-6)
    # wce weights come from class_weights
    w = torch.tensor(class_weights(counts, "enet"), dtype=torch.float32)
    v = build_loss("wce:enet", C, class_counts=counts)(logits, target)
    assert v.item() == pytest.approx(F.cross_entropy(logits, target, weight=w, ignore_index=255).item(), rel=1e-5)


def test_build_loss_errors():
    with pytest.raises(ConfigError, match="class_counts"):
        build_loss("ce+wce:enet", C)
    with pytest.raises(ConfigError, match="3 entries"):
        build_loss("wce", C, class_counts=[1, 2, 3])
    with pytest.raises(ConfigError, match="valid terms"):
        build_loss("bce", C)
    with pytest.raises(ConfigError):
        build_loss("ce", 0)
    with pytest.raises(ConfigError):
        build_loss("ce", C, aux_weight=-1)
    logits, target = _batch(9)
    with pytest.raises(DataError, match="channels"):
        build_loss("ce", C + 1)(logits, target)


def test_tuple_main_aux():
    logits, target = _batch(10, h=16, w=16)
    g = torch.Generator().manual_seed(1)
    aux1 = torch.randn(2, C, 16, 16, generator=g)
    aux2 = torch.randn(2, C, 8, 8, generator=g)  # lower resolution aux head
    loss = build_loss("ce+0.5*dice", C)
    single = build_loss("ce+0.5*dice", C)
    main_v = single(logits, target).item()
    aux_v = single(aux1, target).item() + single(aux2, target).item()
    x = logits.clone().requires_grad_(True)
    a1 = aux1.clone().requires_grad_(True)
    v = loss((x, a1, aux2), target)
    assert v.item() == pytest.approx(main_v + 0.4 * aux_v, rel=1e-5)
    assert loss.last_terms["aux"] == pytest.approx(aux_v, rel=1e-5)
    assert loss.last_terms["total"] == pytest.approx(v.item())
    v.backward()
    assert torch.isfinite(a1.grad).all() and a1.grad.abs().sum() > 0
    # a list works, a one-element tuple equals the tensor, aux_weight is honoured
    assert loss([logits, aux1], target).item() == pytest.approx(
        main_v + 0.4 * single(aux1, target).item(), rel=1e-5)
    assert loss((logits,), target).item() == pytest.approx(main_v, rel=1e-6)
    assert "aux" not in loss.last_terms
    l2 = build_loss("ce+0.5*dice", C, aux_weight=1.0)
    assert l2((logits, aux1), target).item() == pytest.approx(main_v + single(aux1, target).item(), rel=1e-5)


def test_combined_loss_moves_with_module_buffers():
    loss = build_loss("wce:inverse+focal", C, class_counts=[1, 2, 3, 4])
    buffers = dict(loss.named_buffers())
    assert any(k.endswith("weight") for k in buffers)
    loss = loss.to(torch.float64)  # buffers follow .to()
    logits, target = _batch(11)
    assert torch.isfinite(loss(logits.double(), target))
