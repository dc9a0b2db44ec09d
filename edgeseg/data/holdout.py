"""A validation split for a dataset that has none: a seeded hold-out of its training images.

Frames of one video, slices of one patient or shots of one site look alike, so a
validation image whose neighbour is in the training set flatters the model. When the
file names carry a group prefix (``0016E5_07959.png``, ``patient03_slice12.png``,
``siteB-0041.jpg``) whole groups are held out; otherwise single images are. The chosen
image ids are written into the run's config (``holdout``), so eval, build, bench and a
resumed run score the same images.
"""

from __future__ import annotations

import copy
import re

import numpy as np

from edgeseg.errors import ConfigError, DataError

__all__ = ["DEFAULT_VAL_FRACTION", "make_holdout", "describe_holdout", "open_split", "open_joined", "held_out",
           "subset", "group_of", "holdout_of", "valid_holdout"]

DEFAULT_VAL_FRACTION = 0.1
# A group prefix: letters/digits up to the first '_', '-' or space (0016E5_07959 -> 0016E5).
_PREFIX = re.compile(r"^([A-Za-z0-9]+)[_\- ]")
# Holding out more than this share of the images for validation starves training:
# with fewer, larger groups the split falls back to single images.
_MAX_GROUPED_SHARE = 0.34


def group_of(stem: str, pattern: re.Pattern | None = None) -> str | None:
    """The group an image id belongs to (its name prefix, or ``pattern``'s first group)."""
    m = (pattern or _PREFIX).search(stem)
    if m is None:
        return None
    return m.group(1) if m.groups() else m.group(0)


def _compile(group_by: str) -> re.Pattern | None:
    if group_by in ("auto", "none"):
        return None
    try:
        return re.compile(group_by)
    except re.error as exc:
        raise ConfigError(f"--val-group '{group_by}' is not a regular expression ({exc}): use auto, none "
                          f"or a pattern such as 'patient(\\d+)'") from None


def make_holdout(ids: list[str], fraction: float | None = None, *, seed: int = 0, group_by: str = "auto",
                 from_split: str = "train", split: str = "val", groups: list[str] | None = None) -> dict:
    """Choose the validation ids among ``ids``; returns the ``holdout`` record of a run's config.

    ``groups`` names the groups to hold out (``["0001TP"]``: train on the other sequences,
    score that one); otherwise whole groups are drawn (seeded) to about ``fraction``."""
    if groups:
        return _named_groups(sorted(set(ids)), list(groups), group_by, from_split, split, seed)
    fraction = DEFAULT_VAL_FRACTION if fraction is None else float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1 (e.g. 0.1), got {fraction}")
    ids = sorted(set(ids))
    n = len(ids)
    if n < 2:
        raise DataError(f"the '{from_split}' split has {n} image(s): holding out a validation split needs at "
                        f"least 2; add images or give the dataset a val split")
    target = min(n - 1, max(1, round(fraction * n)))
    rng = np.random.default_rng(seed)
    pattern = _compile(group_by)
    note = None
    if group_by != "none":
        groups: dict[str, list[str]] = {}
        for i in ids:
            g = group_of(i, pattern)
            groups.setdefault(g, []).append(i)
        usable = None not in groups and 2 <= len(groups) <= n // 2
        if pattern is not None and not usable:
            raise ConfigError(f"--val-group '{group_by}' gives {len(groups)} group(s) for {n} images"
                              f"{' (some names do not match)' if None in groups else ''}: it needs at least "
                              f"2 groups with 2 or more images on average")
        if usable:
            chosen = _choose_groups(groups, target, rng)
            held = sorted(i for g in chosen for i in groups[g])
            if len(held) <= max(target, _MAX_GROUPED_SHARE * n):
                return {"from": from_split, "split": split, "val": held, "fraction": fraction, "seed": seed,
                        "by": "prefix" if pattern is None else f"pattern {group_by}",
                        "groups": sorted(chosen), "groups_total": len(groups)}
            note = (f"the smallest group set holds {len(held)} of {n} images, too many to hold out: "
                    f"single images are held out, so near-duplicates of training images may be in val")
    order = rng.permutation(n)
    held = sorted(ids[k] for k in order[:target])
    out = {"from": from_split, "split": split, "val": held, "fraction": fraction, "seed": seed, "by": "image"}
    if note:
        out["note"] = note
    return out


def _named_groups(ids: list[str], names: list[str], group_by: str, from_split: str, split: str, seed: int) -> dict:
    """The hold-out of exactly the groups ``names`` (whole sequences chosen by the user)."""
    if group_by == "none":
        raise ConfigError("--holdout-groups needs groups: drop --val-group none (auto groups by name prefix)")
    pattern = _compile(group_by)
    found: dict[str, list[str]] = {}
    for i in ids:
        found.setdefault(group_of(i, pattern), []).append(i)
    known = sorted(g for g in found if g is not None)
    unknown = [g for g in names if g not in found or g is None]
    if unknown:
        raise ConfigError(f"--holdout-groups names {', '.join(unknown)}, which the '{from_split}' images do not have: "
                          f"its groups are {', '.join(known[:12]) or 'none'}{'...' if len(known) > 12 else ''}")
    if set(names) >= set(known) and None not in found:
        raise ConfigError(f"--holdout-groups holds out every group of '{from_split}' ({', '.join(known)}): "
                          f"leave at least one to train on")
    held = sorted(i for g in names for i in found[g])
    return {"from": from_split, "split": split, "val": held, "fraction": len(held) / len(ids), "seed": seed,
            "by": "prefix" if pattern is None else f"pattern {group_by}", "groups": sorted(set(names)),
            "groups_total": len(known), "named": True}


def _choose_groups(groups: dict[str, list[str]], target: int, rng) -> list[str]:
    """Whole groups, in a seeded order, until they hold about ``target`` images (never all groups)."""
    names = sorted(groups)
    order = [names[k] for k in rng.permutation(len(names))]
    chosen, total = [], 0
    for g in order[:-1]:  # the last group always stays for training
        size = len(groups[g])
        # stop where adding the group moves further from the target than stopping does
        if total >= target or (chosen and abs(total + size - target) > abs(total - target)):
            break
        chosen.append(g)
        total += size
    if len(chosen) == 1:  # one group: the one whose size is closest to the target
        chosen = [min(order, key=lambda g: abs(len(groups[g]) - target))]
    return chosen


def valid_holdout(h) -> dict | None:
    """``h`` where it is a well-formed holdout record (from a stranger's checkpoint or manifest), else None."""
    if not isinstance(h, dict):
        return None
    ok = (isinstance(h.get("val"), list) and all(isinstance(v, str) for v in h["val"])
          and isinstance(h.get("from"), str) and isinstance(h.get("split", "val"), str))
    return h if ok else None


def holdout_of(ckpt: dict) -> dict | None:
    """The hold-out a checkpoint was trained with (from its config), or None."""
    cfg = ckpt.get("config")
    return valid_holdout(cfg.get("holdout")) if isinstance(cfg, dict) else None


def describe_holdout(h: dict, total: int) -> str:
    """One line that says what was held out and how."""
    k = len(h["val"])
    how = {"image": "single images"}.get(h["by"], None)
    if how is None:
        gs = h.get("groups") or []
        shown = ", ".join(gs[:4]) + (f" and {len(gs) - 4} more" if len(gs) > 4 else "")
        how = f"whole groups by {'name prefix' if h['by'] == 'prefix' else h['by']}: {shown} " \
              f"({len(gs)} of {h.get('groups_total', '?')})"
    chosen = "named by --holdout-groups" if h.get("named") else f"seed {h['seed']}"
    return (f"{k} of {total} '{h['from']}' images ({100.0 * k / max(1, total):.0f}%, {chosen}, "
            f"{how}) held out as validation")


def subset(dataset, ids, *, split: str, exclude: bool = False):
    """A copy of ``dataset`` with only the images whose id is (or, with ``exclude``, is not) in ``ids``."""
    wanted = set(ids)
    have = {dataset.image_id(i) for i in range(len(dataset))}
    missing = sorted(wanted - have)
    if missing:
        raise DataError(f"the held-out validation list names images that {dataset.root} does not have "
                        f"({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}): score the data the "
                        f"model was trained on, or give a dataset with a '{split}' split")
    keep = [i for i in range(len(dataset)) if (dataset.image_id(i) in wanted) != exclude]
    out = copy.copy(dataset)  # same decoding (label table, colours); its own sample list
    out.samples = [dataset.samples[i] for i in keep]
    out.split = split
    return out


def open_joined(data, split: str, *, fmt: str = "auto", must: bool = False):
    """A split, or several joined with '+' (``train+val``) as one dataset; None where a part is
    missing (with ``must``, the missing part's own DataError)."""
    from edgeseg.data.datasets import available_splits, open_dataset

    parts = split.split("+")
    if not must and any(p not in available_splits(data, fmt) for p in parts):
        return None
    sets = [open_dataset(data, p, fmt=fmt) for p in parts]
    if len(sets) == 1:
        return sets[0]
    for other, name in zip(sets[1:], parts[1:]):
        sets[0].info.check_compatible(other.info, f"split '{name}' of '{data}'")
    joined = copy.copy(sets[0])
    joined.samples = [s for ds in sets for s in ds.samples]
    joined.split = split
    return joined


def held_out(data, split: str, holdout: dict | None, *, fmt: str = "auto") -> bool:
    """Whether ``split`` of ``data`` is read from ``holdout``'s held-out images."""
    if not holdout or split != holdout.get("split", "val"):
        return False
    return bool(holdout.get("forced")) or split not in _native(data, fmt, holdout)


def open_split(data, split: str, holdout: dict | None = None, *, fmt: str = "auto"):
    """``split`` of ``data``: the held-out images of ``holdout`` (where the dataset has no such
    split, or the hold-out was forced with ``--holdout-val``), the rest of the holdout's source
    split, or the dataset's own split (``a+b`` joins two). Returns ``None`` where none gives it.
    """
    if holdout and (held_out(data, split, holdout, fmt=fmt) or split == holdout.get("from")):
        base = open_joined(data, holdout["from"], fmt=fmt, must=True)
        return subset(base, holdout["val"], split=split, exclude=split != holdout.get("split", "val"))
    ds = open_joined(data, split, fmt=fmt)
    if ds is not None and holdout and split in holdout.get("from", "").split("+"):
        # one part of a joined source ('train' of 'train+val'): without its held-out images,
        # so calibration never reads a sequence the training held out
        held = set(holdout["val"]) & {ds.image_id(i) for i in range(len(ds))}
        return subset(ds, held, split=split, exclude=True)
    return ds


def _native(data, fmt: str, holdout: dict) -> list[str]:
    """The dataset's own splits, less the holdout's source (which the holdout divides)."""
    from edgeseg.data.datasets import available_splits

    return [s for s in available_splits(data, fmt) if s not in holdout.get("from", "").split("+")]
