"""Generators for small test datasets (importable from any test: ``from helpers import make_camvid``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.info import CAMVID

__all__ = ["make_camvid", "make_camvid_sample", "make_flat_binary", "tiny_checkpoint", "under_a_terminal"]


def make_camvid_sample(rng: np.random.Generator, size=(64, 96)) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB image, CamVid label 0..11) pair whose pixel colour determines the class:
    a sky band (0), a road band (3), a few coloured rectangles of random classes and a
    void (11) strip; images are the class colours plus a little noise."""
    h, w = size
    label = np.full((h, w), 1, dtype=np.uint8)  # building
    label[: h // 4] = 0  # sky
    label[3 * h // 4:] = 3  # road
    for _ in range(int(rng.integers(2, 5))):
        c = int(rng.integers(0, 11))
        rh = int(rng.integers(max(2, h // 6), max(3, h // 3) + 1))
        rw = int(rng.integers(max(2, w // 6), max(3, w // 3) + 1))
        y0, x0 = int(rng.integers(0, max(1, h - rh))), int(rng.integers(2, max(3, w - rw)))
        y1, x1 = y0 + rh, x0 + rw
        label[y0:y1, x0:x1] = c
    label[:, :2] = 11  # void strip on the left
    colors = np.array(CAMVID.colors + ((0, 0, 0),), dtype=np.int16)
    image = colors[label] + rng.integers(-6, 7, size=(h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_camvid(root, n_train: int = 8, n_val: int = 4, size=(64, 96), seed: int = 0) -> Path:
    """Write a CamVid (SegNet) layout dataset: train/, trainannot/, val/, valannot/,
    train.txt and val.txt, images ``size`` = (H, W). Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            image, label = make_camvid_sample(rng, size)
            name = f"{split}_{i:04d}.png"
            cv2.imwrite(str(root / split / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / f"{split}annot" / name), label)
            lines.append(f"{split}/{name} {split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_flat_binary(root, n: int = 24, size=(64, 96), groups: int = 0, seed: int = 0) -> Path:
    """A flat ``images/`` (JPEG) + ``masks/`` (0/255 PNG) folder with no splits, as a user's own
    data often is: a bright ellipse (foreground, 255) on a dark textured background. With
    ``groups`` the names carry a group prefix (``site0_0003``) the way video frames do."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        cy, cx = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
        cv2.ellipse(mask, (cx, cy), (int(rng.integers(6, w // 4)), int(rng.integers(5, h // 4))), 0, 0, 360, 255, -1)
        image = rng.integers(20, 70, size=(h, w, 3)).astype(np.int16)
        image[mask > 0] += 150
        name = f"site{i % groups}_{i:04d}" if groups else f"img{i:04d}"
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), np.clip(image, 0, 255).astype(np.uint8))
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
    return root


def make_grouped_split(root, n: int = 30, size=(32, 48), groups: int = 5) -> Path:
    """A train/val dataset (images/ + masks/ per split) whose names carry a group prefix and
    whose every group has frames in both splits, as CamVid's sequence 0016E5 has."""
    root = Path(root)
    flat = make_flat_binary(root.with_name(root.name + "-flat"), n=n, size=size, groups=groups)
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (root / sub / split).mkdir(parents=True)
    for i, img in enumerate(sorted((flat / "images").iterdir())):
        split = "val" if i % 3 == 0 else "train"
        img.rename(root / "images" / split / img.name)
        (flat / "masks" / f"{img.stem}.png").rename(root / "masks" / split / f"{img.stem}.png")
    return root


def tiny_checkpoint(path, size=(64, 96), seed: int = 0) -> Path:
    """An untrained 2-level U-Net (base 4 channels) checkpoint for CamVid at ``size``: the
    smallest real model, for tests that drive commands rather than accuracy."""
    import torch

    from edgeseg.models import create_model
    from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

    torch.manual_seed(seed)
    save_checkpoint(make_checkpoint(create_model("unet", 11, base_channels=4, depth=2), CAMVID, size), path)
    return Path(path)


def under_a_terminal(args, cwd=None, extra_env=None, pipe_stdout: bool = False):
    """Run the CLI with stdout and stderr on a pseudo-terminal, as a person at a shell sees it;
    returns (exit code, everything the terminal showed). With ``pipe_stdout`` stdout is a pipe
    instead (it may carry data) and the result is (exit code, terminal, stdout)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", **(extra_env or {})}
    p = subprocess.Popen([sys.executable, "-m", "edgeseg", *args], stdout=subprocess.PIPE if pipe_stdout else slave,
                         stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stdout = p.stdout.read().decode() if pipe_stdout else None
    code, seen = p.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")
    return (code, seen, stdout) if pipe_stdout else (code, seen)


#: the smallest U-Net `edgeseg train` takes, for tests that drive the command
TINY_TRAIN = ["--model", "unet", "--model-arg", "base_channels=4", "--model-arg", "depth=2", "--workers", "0",
              "--no-progress", "--batch-size", "4"]


def run_cli(args, capsys):
    """``edgeseg ARGS`` in-process: (exit code, stdout, stderr)."""
    from edgeseg.cli.main import main

    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err
