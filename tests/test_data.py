"""Dataset readers, validation, transforms and statistics (generated data + real CamVid)."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import make_camvid
from edgeseg.data import (
    CAMVID,
    CITYSCAPES,
    VOC,
    SegmentationDataset,
    available_splits,
    build_eval_transform,
    build_train_transform,
    class_pixel_counts,
    detect_format,
    normalize,
    open_dataset,
    pad_to_multiple,
)
from edgeseg.data.datasets import CITYSCAPES_ID_TO_TRAINID
from edgeseg.data.info import voc_colormap
from edgeseg.errors import DataError


# --------------------------------------------------------------------------- helpers

def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_gray(path: Path, m: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), m)


def write_palette_png(path: Path, index: np.ndarray, palette) -> None:
    """A colour-type-3 (palette) PNG, written by hand (no Pillow here)."""
    h, w = index.shape
    pal = bytes(v for c in palette for v in c)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + index[y].astype(np.uint8).tobytes() for y in range(h))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
           + chunk(b"PLTE", pal) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def rand_image(rng, h=32, w=48) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- camvid

def test_camvid_generated(tiny_camvid):
    assert detect_format(tiny_camvid) == "camvid"
    assert available_splits(tiny_camvid) == ["train", "val"]
    tr, va = open_dataset(tiny_camvid, "train"), open_dataset(tiny_camvid, "val")
    assert (len(tr), len(va)) == (8, 4)
    assert tr.info == CAMVID and tr.split == "train" and tr.root == tiny_camvid
    assert tr.image_id(0) == "train_0000"
    image, mask = tr.read(0)
    assert image.dtype == np.uint8 and image.shape == (64, 96, 3)
    assert mask.dtype == np.uint8 and mask.shape == (64, 96)
    raw = cv2.imread(str(tr.samples[0][1]), cv2.IMREAD_UNCHANGED)
    assert (raw == 11).any()
    assert (mask[raw == 11] == 255).all()  # void -> ignore
    assert (mask[raw != 11] == raw[raw != 11]).all()
    assert set(np.unique(mask)) <= set(range(11)) | {255}
    # image colours follow the class colours (RGB order, not BGR)
    sky = mask == 0
    assert np.abs(image[sky].mean(0) - np.array(CAMVID.colors[0])).max() < 6
    x, y = tr[0]
    assert x.dtype == torch.float32 and x.shape == (3, 64, 96)
    assert y.dtype == torch.int64 and y.shape == (64, 96)
    assert torch.equal(y, torch.from_numpy(mask.astype(np.int64)))
    np.testing.assert_allclose(x.numpy(), normalize(image, CAMVID.mean, CAMVID.std), rtol=1e-6)


def test_camvid_without_lists_and_with_segnet_absolute_paths(tmp_path):
    root = make_camvid(tmp_path / "cv", 3, 2, (16, 24))
    lines = (root / "train.txt").read_text().split("\n")
    (root / "train.txt").write_text("\n".join(
        f"/SegNet/CamVid/{ln.split()[0]} /SegNet/CamVid/{ln.split()[1]}" for ln in lines if ln) + "\n")
    assert len(open_dataset(root, "train")) == 3
    (root / "train.txt").unlink()
    (root / "val.txt").unlink()
    ds = open_dataset(root, "val", fmt="camvid")
    assert len(ds) == 2 and ds.read(1)[1].shape == (16, 24)


def test_camvid_list_names_missing_file(tmp_path):
    root = make_camvid(tmp_path / "cv", 2, 1, (16, 24))
    (root / "train.txt").write_text("train/nope.png trainannot/nope.png\n")
    with pytest.raises(DataError, match="nope.png"):
        open_dataset(root, "train")


def test_real_camvid(camvid_root):
    tr, va = open_dataset(camvid_root, "train"), open_dataset(camvid_root, "val")
    assert (len(tr), len(va)) == (367, 101)
    assert tr.info.num_classes == 11
    allowed = set(range(11)) | {255}
    for ds in (tr, va):
        for i in range(0, len(ds), 25):
            image, mask = ds.read(i)
            assert image.shape == (360, 480, 3) and mask.shape == (360, 480)
            assert set(np.unique(mask).tolist()) <= allowed
    counts = class_pixel_counts(tr, 11)
    # README: Road 20.08M, Building 14.75M, Bicyclist 0.18M pixels over train
    assert abs(counts[3] - 20.08e6) < 0.01e6 and abs(counts[1] - 14.75e6) < 0.01e6
    assert abs(counts[10] - 0.18e6) < 0.01e6
    assert 367 * 360 * 480 - 2.6e6 < counts.sum() < 367 * 360 * 480 - 2.4e6  # void 2.50M


# --------------------------------------------------------------------------- cityscapes

def test_cityscapes_label_ids_to_train_ids(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cs"
    ids = np.array([0, 1, 4, 6, 7, 8, 11, 17, 23, 24, 26, 31, 32, 33, 255], dtype=np.uint8)
    for city, n in (("aachen", 2), ("bonn", 1)):
        for k in range(n):
            base = f"{city}_{k:06d}_000019"
            write_rgb(root / "leftImg8bit/train" / city / f"{base}_leftImg8bit.png", rand_image(rng, 8, 16))
            lab = rng.choice(ids, size=(8, 16)).astype(np.uint8)
            write_gray(root / "gtFine/train" / city / f"{base}_gtFine_labelIds.png", lab)
            write_gray(root / "gtFine/train" / city / f"{base}_gtFine_color.png", lab)  # ignored
    assert detect_format(root) == "cityscapes"
    ds = open_dataset(root, "train")
    assert len(ds) == 3 and ds.info == CITYSCAPES
    assert ds.image_id(0) == "aachen_000000_000019_leftImg8bit"
    raw = cv2.imread(str(ds.samples[0][1]), cv2.IMREAD_UNCHANGED)
    mask = ds.read(0)[1]
    expect = np.full(256, 255, dtype=np.uint8)
    for k, v in CITYSCAPES_ID_TO_TRAINID.items():
        expect[k] = v
    assert (mask == expect[raw]).all()
    assert (mask[raw == 26] == 13).all() and (mask[raw == 7] == 0).all() and (mask[raw == 4] == 255).all()
    # label ids above 33 (other than 255) are not Cityscapes ids
    bad = raw.copy()
    bad[0, 0] = 77
    write_gray(ds.samples[0][1], bad)
    with pytest.raises(DataError, match=r"aachen_000000_000019_gtFine_labelIds\.png.*77"):
        ds.read(0)
    with pytest.raises(DataError, match="no split 'val'"):
        open_dataset(root, "val")


def test_cityscapes_image_without_label(tmp_path):
    root = tmp_path / "cs"
    write_rgb(root / "leftImg8bit/val/x/x_000000_000001_leftImg8bit.png", np.zeros((4, 4, 3), np.uint8))
    (root / "gtFine/val/x").mkdir(parents=True)
    with pytest.raises(DataError, match="x_000000_000001_leftImg8bit.png"):
        open_dataset(root, "val")


# --------------------------------------------------------------------------- voc

def make_voc(root: Path, rng) -> tuple[Path, dict]:
    voc = root / "VOCdevkit" / "VOC2012"
    cmap = voc_colormap(256)
    masks = {}
    for i, name in enumerate(["2007_000032", "2007_000039", "2007_000063"]):
        write_rgb(voc / "JPEGImages" / f"{name}.jpg", rand_image(rng, 20, 30))
        m = np.zeros((20, 30), np.uint8)
        m[5:15, 5:15] = [1, 15, 20][i]
        m[4, :] = 255  # boundary
        write_palette_png(voc / "SegmentationClass" / f"{name}.png", m, cmap)
        masks[name] = m
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text("2007_000032\n2007_000039\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("2007_000063\n")
    return voc, masks


def test_voc_palette_masks(tmp_path):
    voc, masks = make_voc(tmp_path, np.random.default_rng(2))
    # OpenCV gives the palette's colours, not the indices: the reader must map them back.
    assert cv2.imread(str(voc / "SegmentationClass/2007_000032.png"), cv2.IMREAD_UNCHANGED).ndim == 3
    for root in (voc, voc.parent, tmp_path):
        assert detect_format(root) == "voc"
        ds = open_dataset(root, "train")
        assert len(ds) == 2 and ds.info == VOC and ds.root == voc
    ds = open_dataset(tmp_path, "val")
    image, mask = ds.read(0)
    assert image.shape == (20, 30, 3)
    assert (mask == masks["2007_000063"]).all()
    assert set(np.unique(mask)) == {0, 20, 255}
    # single-channel index masks (e.g. SegmentationClassAug) work too
    write_gray(voc / "SegmentationClass/2007_000063.png", masks["2007_000063"])
    assert (ds.read(0)[1] == masks["2007_000063"]).all()
    # a palette index beyond the 21 classes is an error naming the file
    bad = masks["2007_000063"].copy()
    bad[0, 0] = 40
    write_palette_png(voc / "SegmentationClass/2007_000063.png", bad, voc_colormap(256))
    with pytest.raises(DataError, match=r"2007_000063\.png.*40"):
        ds.read(0)
    with pytest.raises(DataError, match="test.txt"):
        open_dataset(voc, "test")


# --------------------------------------------------------------------------- folder

def test_folder_index_masks_with_classes_txt(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "fold"
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            write_rgb(root / "images" / split / f"im{i}.jpg", rand_image(rng))
            write_gray(root / "masks" / split / f"im{i}.png", rng.integers(0, 3, (32, 48)).astype(np.uint8))
    (root / "classes.txt").write_text("bg\ncat\ndog\n")
    assert detect_format(root) == "folder"
    assert available_splits(root) == ["train", "val"]
    ds = open_dataset(root, "val")
    assert len(ds) == 2 and ds.info.classes == ("bg", "cat", "dog")
    assert set(np.unique(ds.read(0)[1])) <= {0, 1, 2}
    write_gray(root / "masks/val/im1.png", np.full((32, 48), 3, np.uint8))
    with pytest.raises(DataError, match=r"im1\.png.*3"):
        ds.read(1)
    # <split>/images + <split>/masks also works
    alt = tmp_path / "alt"
    shutil.copytree(root / "images/train", alt / "train/images")
    shutil.copytree(root / "masks/train", alt / "train/masks")
    assert detect_format(alt) == "folder" and len(open_dataset(alt, "train")) == 3


def test_folder_binary_masks_flat(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "bin"
    for i in range(3):
        write_rgb(root / "images" / f"a{i}.png", rand_image(rng))
        m = np.zeros((32, 48), np.uint8)
        m[8:20, 10:30] = 255
        write_gray(root / "masks" / f"a{i}_mask.png", m)
    ds = open_dataset(root)
    assert ds.info.classes == ("background", "foreground") and len(ds) == 3
    mask = ds.read(0)[1]
    assert set(np.unique(mask)) == {0, 1} and mask[10, 15] == 1
    with pytest.raises(DataError, match="flat"):
        open_dataset(root, "val")
    (root / "val.txt").write_text("a2\n")
    assert open_dataset(root, "val").image_id(0) == "a2" and len(open_dataset(root, "val")) == 1


def test_folder_rgb_masks_with_palette(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "rgb"
    root.mkdir(parents=True)
    (root / "palette.txt").write_text("# R G B name\n0 0 0 background\n255 0 0 road\n0 255 0 tree\n"
                                      "255 255 255 ignore\n")
    pal = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0), (255, 255, 255)], np.uint8)
    idx = rng.integers(0, 4, (32, 48))
    write_rgb(root / "images/train/x.png", rand_image(rng))
    write_rgb(root / "masks/train/x.png", pal[idx])
    ds = open_dataset(root, "train")
    assert ds.info.classes == ("background", "road", "tree")
    assert ds.info.colors == ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    mask = ds.read(0)[1]
    expect = np.where(idx == 3, 255, idx)
    assert (mask == expect).all()
    # single-channel index masks are read as indices with the same palette file
    write_gray(root / "masks/train/x.png", np.ones((32, 48), np.uint8))
    assert (ds.read(0)[1] == 1).all()
    bad = pal[idx].copy()
    bad[0, 0] = (1, 2, 3)
    write_rgb(root / "masks/train/x.png", bad)
    with pytest.raises(DataError, match=r"x\.png.*\(1,2,3\)"):
        ds.read(0)


def test_folder_classes_json_and_inferred_classes(tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "js"
    write_rgb(root / "images/train/a.png", rand_image(rng))
    write_gray(root / "masks/train/a.png", np.array([[0, 1, 4, 255]] * 32 * 12, np.uint8).reshape(32, 48))
    ds = open_dataset(root, "train")  # inferred: 5 classes
    assert ds.info.num_classes == 5
    (root / "classes.json").write_text(json.dumps({"name": "mine", "classes": list("abcdef"),
                                                   "colors": [[i, i, i] for i in range(6)]}))
    ds = open_dataset(root, "train")
    assert ds.info.name == "mine" and ds.info.num_classes == 6
    assert set(np.unique(ds.read(0)[1])) == {0, 1, 4, 255}


# --------------------------------------------------------------------------- bad input

@pytest.fixture()
def small_camvid(tmp_path):
    return make_camvid(tmp_path / "cv", 3, 2, (16, 24))


def test_corrupt_image(small_camvid):
    ds = open_dataset(small_camvid, "train")
    ds.samples[1][0].write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match="train_0001.png"):
        ds.read(1)
    with pytest.raises(DataError, match="train_0001.png"):
        ds[1]


def test_corrupt_mask(small_camvid):
    ds = open_dataset(small_camvid, "train")
    ds.samples[0][1].write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"trainannot.train_0000\.png"):
        ds.read(0)


def test_mask_of_another_size(small_camvid):
    ds = open_dataset(small_camvid, "train")
    write_gray(ds.samples[2][1], np.zeros((10, 24), np.uint8))
    with pytest.raises(DataError, match=r"train_0002\.png.*16x24.*10x24"):
        ds.read(2)


def test_out_of_range_label(small_camvid):
    ds = open_dataset(small_camvid, "val")
    m = cv2.imread(str(ds.samples[0][1]), cv2.IMREAD_UNCHANGED)
    m[0, 0], m[1, 1] = 12, 200
    write_gray(ds.samples[0][1], m)
    with pytest.raises(DataError, match=r"val_0000\.png.*12, 200"):
        ds.read(0)


def test_colour_mask_in_index_dataset_and_odd_images(small_camvid):
    ds = open_dataset(small_camvid, "train")
    m = cv2.imread(str(ds.samples[0][1]), cv2.IMREAD_UNCHANGED)
    write_gray(ds.samples[0][1], np.dstack([m, m, m]))  # grey stored as 3 channels: fine
    assert (ds.read(0)[1] == np.where(m == 11, 255, m)).all()
    write_gray(ds.samples[0][1], np.dstack([m, m + 1, m]))
    with pytest.raises(DataError, match=r"train_0000\.png.*single-channel"):
        ds.read(0)
    rgb = ds.read(1)[0]
    rgba = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 7, np.uint8)])
    write_gray(ds.samples[1][0], rgba)  # 4 channels: alpha dropped
    assert (ds.read(1)[0] == rgb).all()
    write_gray(ds.samples[1][0], rgb[:, :, 0])  # greyscale image -> 3 channels
    assert ds.read(1)[0].shape == (16, 24, 3)


def test_empty_split_and_missing_mask(small_camvid):
    (small_camvid / "val.txt").unlink()
    for p in (small_camvid / "val").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="empty.*val"):
        open_dataset(small_camvid, "val")
    (small_camvid / "train.txt").unlink()
    (small_camvid / "trainannot/train_0001.png").unlink()
    with pytest.raises(DataError, match="train_0001.png"):
        open_dataset(small_camvid, "train")
    with pytest.raises(DataError, match="no split 'test'"):
        open_dataset(small_camvid, "test")


def test_unknown_layout_and_missing_root(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff/readme.md").write_text("hi")
    with pytest.raises(DataError, match=r"stuff.*leftImg8bit.*JPEGImages.*images/"):
        open_dataset(tmp_path / "stuff")
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nothere")
    with pytest.raises(DataError, match="unknown dataset format"):
        open_dataset(tmp_path / "stuff", fmt="coco")


def test_folder_image_without_mask(tmp_path):
    rng = np.random.default_rng(7)
    write_rgb(tmp_path / "d/images/train/a.png", rand_image(rng))
    write_rgb(tmp_path / "d/images/train/b.png", rand_image(rng))
    write_gray(tmp_path / "d/masks/train/a.png", np.zeros((32, 48), np.uint8))
    with pytest.raises(DataError, match=r"b\.png"):
        open_dataset(tmp_path / "d", "train")
    with pytest.raises(DataError, match="empty"):
        (tmp_path / "d/images/val").mkdir()
        (tmp_path / "d/masks/val").mkdir()
        open_dataset(tmp_path / "d", "val")


# --------------------------------------------------------------------------- transforms

def _pair(rng, h=40, w=56):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 3:] = 4
    mask[h // 2:, :] = 7
    mask[:3, :3] = 255
    return image, mask


def test_train_transform_sizes_and_labels():
    rng = np.random.default_rng(8)
    image, mask = _pair(rng)
    t = build_train_transform((32, 48), scale=(0.5, 2.0), rotate=30, elastic=True)
    for _ in range(15):
        im, m = t(image, mask)
        assert im.shape == (32, 48, 3) and im.dtype == np.uint8
        assert m.shape == (32, 48) and m.dtype == np.uint8
        assert set(np.unique(m)) <= {0, 4, 7, 255}  # nearest: no interpolated labels


def test_train_transform_pads_with_ignore():
    rng = np.random.default_rng(9)
    image, mask = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), np.ones((10, 12), np.uint8)
    t = build_train_transform((32, 32), scale=(1.0, 1.0), hflip=False, color_jitter=False)
    im, m = t(image, mask)
    assert (m == 1).sum() == 120 and (m == 255).sum() == 32 * 32 - 120
    assert (im[m == 255] == (124, 116, 104)).all()
    im0, _ = build_train_transform((32, 32), scale=(1, 1), color_jitter=False, image_fill=0)(image, mask)
    assert (im0.reshape(-1, 3).max(1) == 0).sum() >= 32 * 32 - 120


def test_train_transform_rotation_fills_ignore():
    image = np.full((64, 64, 3), 200, np.uint8)
    mask = np.full((64, 64), 2, np.uint8)
    t = build_train_transform((64, 64), scale=(1, 1), rotate=45, hflip=False, color_jitter=False)
    seen_ignore = False
    for _ in range(10):
        _, m = t(image, mask)
        assert set(np.unique(m)) <= {2, 255}
        seen_ignore |= bool((m == 255).any())
    assert seen_ignore


def test_hflip_moves_image_and_mask_together():
    rng = np.random.default_rng(10)
    image, mask = _pair(rng)
    t = build_train_transform(mask.shape, scale=(1, 1), color_jitter=False)
    outcomes = set()
    for _ in range(30):
        im, m = t(image, mask)
        if (im == image).all():
            assert (m == mask).all()
            outcomes.add("same")
        else:
            assert (im == image[:, ::-1]).all() and (m == mask[:, ::-1]).all()
            outcomes.add("flipped")
    assert outcomes == {"same", "flipped"}


def test_colour_jitter_leaves_mask_alone():
    rng = np.random.default_rng(11)
    image, mask = _pair(rng)
    t = build_train_transform(mask.shape, scale=(1, 1), hflip=False, color_jitter=True)
    changed = False
    for _ in range(5):
        im, m = t(image, mask)
        assert (m == mask).all()
        changed |= not (im == image).all()
    assert changed


def test_eval_transform_pads_camvid():
    rng = np.random.default_rng(12)
    image = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    mask = rng.integers(0, 11, (360, 480)).astype(np.uint8)
    im, m = build_eval_transform()(image, mask)
    assert im.shape == (384, 480, 3) and m.shape == (384, 480)
    assert (im[:360] == image).all() and (m[:360] == mask).all()
    assert (m[360:] == 255).all()
    im, m = build_eval_transform((400, 512), ignore_index=250)(image, mask)
    assert m.shape == (400, 512) and (m[:, 480:] == 250).all() and (im[:360, :480] == image).all()
    with pytest.raises(DataError, match="larger"):
        build_eval_transform((256, 256))(image, mask)
    same = np.zeros((64, 96, 3), np.uint8)
    assert build_eval_transform()(same, np.zeros((64, 96), np.uint8))[0] is same


def test_pad_to_multiple_and_normalize():
    img = np.ones((360, 481, 3), np.uint8)
    p, (ph, pw) = pad_to_multiple(img, 32)
    assert p.shape == (384, 512, 3) and (ph, pw) == (24, 31) and p[-1, -1].sum() == 0
    p, pads = pad_to_multiple(img[:, :480], 32, value=(1, 2, 3))
    assert pads == (24, 0) and tuple(p[-1, 0]) == (1, 2, 3)
    g, pads = pad_to_multiple(np.zeros((30, 30), np.uint8), 16, value=255)
    assert g.shape == (32, 32) and g[-1, -1] == 255
    x = normalize(np.array([[[255, 0, 124]]], np.uint8), CAMVID.mean, CAMVID.std)
    assert x.shape == (3, 1, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [(1 - .485) / .229, (0 - .456) / .224, (124 / 255 - .406) / .225], rtol=1e-5)
    with pytest.raises(DataError):
        normalize(np.zeros((4, 4), np.uint8))


def test_dataset_with_transform_and_loader(tiny_camvid):
    ds = open_dataset(tiny_camvid, "train", transform=build_train_transform((48, 64), rotate=10))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 48, 64) and y.shape == (4, 48, 64) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) <= set(range(11)) | {255}
    ev = open_dataset(tiny_camvid, "val", transform=build_eval_transform())
    assert ev[0][0].shape == (3, 64, 96)


def test_class_pixel_counts(tiny_camvid, tmp_path):
    ds = open_dataset(tiny_camvid, "train")
    expect = np.zeros(11, np.int64)
    for i in range(len(ds)):
        m = ds.read(i)[1]
        expect += np.bincount(m[m != 255], minlength=11)
    got = class_pixel_counts(ds, 11)
    assert got.dtype == np.int64 and (got == expect).all()
    assert (class_pixel_counts(ds, cache=tmp_path) == expect).all()
    assert len(list(tmp_path.glob("pixel-counts-*.json"))) == 1
    assert (class_pixel_counts(ds, cache=tmp_path) == expect).all()
    with pytest.raises(DataError, match="num_classes"):
        class_pixel_counts(ds, 3)
