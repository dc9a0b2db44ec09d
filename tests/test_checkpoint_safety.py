"""A stranger's checkpoint cannot run code: every command that opens a checkpoint refuses a
.pt file whose unpickling would call a function, without calling it; edgeseg's own
checkpoints (trained, resumed, NNCF-quantized, the shipped zoo) hold plain data only and
load with ``weights_only=True``, quantized ones even without the compression extras."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from edgeseg.data.info import CAMVID
from edgeseg.errors import CheckpointError
from edgeseg.train.checkpoint import FORMAT, load_checkpoint

from helpers import make_camvid


class _RunsCode:
    """Unpickling this calls os.system: what a hostile .pt file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "code-ran"
    path = root / "evil.pt"
    torch.save({"format": FORMAT, "version": 1, "model": {"name": "enet", "num_classes": 11, "kwargs": {}},
                "dataset": CAMVID.to_dict(), "input_size": [64, 96], "state_dict": {},
                "config": _RunsCode(marker)}, path)
    data = make_camvid(root / "camvid", 2, 2, (64, 96))
    return root, path, marker, data


COMMANDS = {
    "eval": ["eval", "{ckpt}", "--data", "{data}"],
    "build": ["build", "{ckpt}", "--target", "onnxruntime-cpu", "--out", "{root}/art"],
    "bench": ["bench", "onnxruntime-cpu", "--model", "{ckpt}", "--runs", "1", "--warmup", "0"],
    "predict": ["predict", "{ckpt}", "{data}/val/val_0000.png", "--out", "{root}/pred"],
    "compress": ["compress", "{ckpt}", "--data", "{data}", "--ptq", "--out", "{root}/c.pt"],
    "train --resume": ["train", "--resume", "{ckpt}", "--out", "{root}/run"],
    "demo": ["demo", "--model", "{ckpt}", "--source", "{data}/val", "--no-window"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_hostile_checkpoint_is_refused_without_running_code(hostile, command):
    root, ckpt, marker, data = hostile
    args = [a.format(ckpt=ckpt, data=data, root=root) for a in COMMANDS[command]]
    before = set(root.iterdir())
    p = subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, timeout=240,
                       cwd=root)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith(("W", "I0"))]
    assert not marker.exists(), f"{command}: the checkpoint's code ran"
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr and lines and "holds Python objects (posix.system" in lines[-1], p.stderr
    assert set(root.iterdir()) == before  # nothing written


def test_load_checkpoint_refuses_and_names_the_way_out(hostile):
    root, ckpt, marker, _ = hostile
    with pytest.raises(CheckpointError, match="tools/upgrade_checkpoint.py"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_corrupt_file_is_not_called_hostile(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02not really a pickle")
    with pytest.raises(CheckpointError, match="corrupt or not a PyTorch file"):
        load_checkpoint(bad)


def test_quantized_zoo_checkpoint_loads_as_plain_data_without_nncf():
    """The shipped NNCF QAT checkpoint opens for inspection with nncf unimportable."""
    code = ("import sys; sys.modules['nncf'] = None\n"
            "from edgeseg import zoo\n"
            "from edgeseg.train.checkpoint import load_checkpoint\n"
            "ck = load_checkpoint(zoo.zoo_checkpoint_path('enet-camvid-int8'))\n"
            "mode = ck['quantization']['nncf_config']['compression_state'][0]['module_config']['mode']\n"
            "assert 'nncf' not in [m for m in sys.modules if m == 'nncf' and sys.modules[m] is not None]\n"
            "print(mode)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "'__enum__': 'nncf.common.quantization.structs.QuantizationScheme'" in p.stdout


def test_nncf_config_round_trip_is_exact_and_refuses_unknown_names():
    pytest.importorskip("nncf")
    from nncf.common.quantization.structs import QuantizationScheme

    from edgeseg.compress.quant import config_from_plain, config_to_plain

    cfg = {"a": [QuantizationScheme.ASYMMETRIC, (1, "x", None)], "t": torch.ones(2)}
    plain = config_to_plain(cfg)
    assert plain["a"][0] == {"__enum__": "nncf.common.quantization.structs.QuantizationScheme",
                             "value": "asymmetric"}
    back = config_from_plain(plain)
    assert back["a"][0] is QuantizationScheme.ASYMMETRIC and back["a"][1] == (1, "x", None)
    with pytest.raises(CheckpointError, match="not an NNCF enum"):
        config_from_plain({"__enum__": "os.system", "value": "touch x"})
    with pytest.raises(TypeError):
        config_to_plain({"x": object()})
