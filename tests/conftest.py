"""Shared fixtures: the real CamVid (when present) and small generated datasets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# The suite runs tiny tensors on a 2-core machine: one intra-op thread is faster there
# and keeps timings sane when another process is busy (OpenMP spinning with 2 threads
# on a shared core made steps 50x slower).
torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import make_camvid, make_camvid_sample  # noqa: E402,F401  (re-exported)

REPO = Path(__file__).resolve().parents[1]
CAMVID_DIR = REPO.parent / "shared" / "data" / "camvid"


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    if not (CAMVID_DIR / "train.txt").is_file():
        pytest.skip(f"real CamVid not found at {CAMVID_DIR}")
    return CAMVID_DIR


@pytest.fixture(scope="session")
def tiny_camvid(tmp_path_factory) -> Path:
    """8 train + 4 val images of 64x96 in CamVid layout (labels 0..10 and void 11)."""
    return make_camvid(tmp_path_factory.mktemp("tiny_camvid") / "camvid", 8, 4, (64, 96))
