"""The README's "Running an artifact without edgeseg" code blocks, run as written (only the
artifact folder and image path swapped in) on real artifacts: their class maps must match
edgeseg's own predictor."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeseg.build import build
from edgeseg.data.info import CAMVID
from edgeseg.models import create_model
from edgeseg.formats import load_predictor
from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

from helpers import make_camvid

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[str]:
    text = README.read_text()
    section = text[text.index("### Running an artifact without edgeseg"):]
    section = section[:section.index("\n## ")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    data = make_camvid(root / "camvid", 4, 2, (64, 96))
    torch.manual_seed(0)
    ckpt = root / "unet.pt"
    save_checkpoint(make_checkpoint(create_model("unet", 11, base_channels=8), CAMVID, (64, 96)), ckpt)
    rgb = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)  # padded to 64x96
    image = root / "image.png"
    cv2.imwrite(str(image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return root, data, ckpt, image, rgb


def run_blocks(blocks, artifact: Path, image: Path) -> np.ndarray:
    pre = blocks[0].replace('d = "artifacts/quickstart"', f'd = "{artifact}"').replace('"image.png"', f'"{image}"')
    assert pre != blocks[0]
    scope: dict = {}
    for code in [pre, *blocks[1:]]:
        exec(compile(code, str(README), "exec"), scope)
    return np.asarray(scope["classes"])


CASES = [("onnxruntime-cpu", "fp32", 1, 1.0), ("openvino-cpu", "fp32", 2, 0.999), ("coral", "int8", 3, 0.999)]


@pytest.mark.parametrize("target,precision,block,min_agree", CASES, ids=[c[0] for c in CASES])
def test_readme_block_matches_predictor(setup, target, precision, block, min_agree):
    if target == "coral":
        pytest.importorskip("litert_torch")
    if target.startswith("openvino"):
        pytest.importorskip("openvino")
    root, data, ckpt, image, rgb = setup
    blocks = snippets()
    assert len(blocks) == 4  # pre-processing, ONNX Runtime, OpenVINO, TFLite
    out = build(ckpt, target, precision=precision, data=data if precision == "int8" else None,
                out=root / f"{target}-{precision}", allow_drop=True)
    classes = run_blocks([blocks[0], blocks[block]], out, image)
    expected = load_predictor(out).predict(rgb)
    assert classes.shape == expected.shape == rgb.shape[:2]
    assert (classes == expected).mean() >= min_agree
