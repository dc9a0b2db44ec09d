"""Training, resume, DDP, eval, predict and the CLI's handling of bad input, on small data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeseg.cli.main import main
from edgeseg.errors import CheckpointError
from edgeseg.evaluate import evaluate
from edgeseg.checkpoints import load_model
from edgeseg.train import TrainConfig, train
from edgeseg.train.schedule import lr_factor

from helpers import make_camvid

SMALL_MODEL = {"model": "unet", "model_kwargs": {"base_channels": 8}}


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def quick_config(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), epochs=2, batch_size=4, workers=0, progress=False,
                img_size=(64, 96), scale=(1.0, 1.0), color_jitter=False, **SMALL_MODEL)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid_small")
    make_camvid(root, n_train=4, n_val=2, size=(64, 96))
    return root


@pytest.mark.slow
def test_overfit_reaches_high_miou(small_data, tmp_path):
    """End to end: a few images learnt nearly perfectly proves loss, loop and metrics agree."""
    cfg = quick_config(small_data, tmp_path / "run", epochs=30, steps_per_epoch=5, val_split="train", lr=1e-2,
                       loss="ohem", hflip=False, val_every=10)
    result = train(cfg, log=lambda *_: None)
    assert result["best_miou"] > 0.95
    scored = evaluate(tmp_path / "run" / "best.pt", small_data, "train")
    assert scored["miou"] == pytest.approx(result["best_miou"], abs=1e-6)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and "val_miou" in json.loads(lines[-1])


def test_resume_continues_schedule_and_log(small_data, tmp_path):
    straight = quick_config(small_data, tmp_path / "straight", epochs=3, steps_per_epoch=2)
    train(straight, log=lambda *_: None)
    first = quick_config(small_data, tmp_path / "resumed", epochs=2, steps_per_epoch=2)
    train(first, log=lambda *_: None)
    train(TrainConfig(model="", data="", epochs=3, out="", progress=False, workers=0),
          resume=tmp_path / "resumed" / "last.pt", log=lambda *_: None)

    resumed = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    reference = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    assert resumed["train_state"]["epoch"] == 2
    # The schedule continues where it stopped rather than restarting.
    assert resumed["metrics"]["lr"] == pytest.approx(reference["metrics"]["lr"])
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 3


def test_checkpoint_carries_everything_needed(small_data, tmp_path):
    train(quick_config(small_data, tmp_path / "run", epochs=1, steps_per_epoch=1), log=lambda *_: None)
    model, info, ckpt = load_model(tmp_path / "run" / "last.pt")
    assert info.name == "camvid" and info.num_classes == 11
    assert ckpt["input_size"] == [64, 96]
    assert model.model_name == "unet" and model.model_kwargs == {"base_channels": 8}
    assert not model.training
    # No temp files are left beside the checkpoints.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "config.json", "last.pt",
                                                                     "metrics.jsonl"]


def test_lr_schedule_shapes():
    assert lr_factor(0, 100, 10, "poly") == pytest.approx(0.01)
    assert lr_factor(10, 100, 10, "poly") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "poly") == pytest.approx(0.0)
    assert lr_factor(50, 100, 0, "poly") == pytest.approx(0.5 ** 0.9)


@pytest.mark.slow
def test_ddp_two_processes_gloo(small_data, tmp_path):
    """torchrun with two CPU processes (gloo): both take part, rank 0 writes once."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "edgeseg", "train", "--model", "unet", "--model-arg", "base_channels=8", "--data", str(small_data),
           "--epochs", "2", "--batch-size", "4", "--img-size", "64x96", "--workers", "0", "--no-progress",
           "--device", "cpu", "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2" in proc.stdout  # the run reports a world of two processes
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 2
    model, _, ckpt = load_model(tmp_path / "ddp" / "last.pt")
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])


def test_cli_train_eval_predict(small_data, tmp_path, capsys):
    out = tmp_path / "cli"
    code, stdout, err = run_cli(["train", "--model", "unet", "--model-arg", "base_channels=8", "--data", small_data,
                                 "--epochs", "1", "--batch-size", "2", "--img-size", "64x96", "--workers", "0",
                                 "--no-progress", "--out", out, "--loss", "ce+0.5*dice"], capsys)
    assert code == 0, err
    assert "best val mIoU" in stdout

    code, stdout, err = run_cli(["eval", out / "best.pt", "--data", small_data, "--json", tmp_path / "m.json",
                                 "--boundary-f1", "2"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["pixel_accuracy"] <= 1.0
    assert set(metrics["per_class_iou"]) == {"Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
                                             "Fence", "Car", "Pedestrian", "Bicyclist"}
    assert "Road" in stdout and "mIoU" in stdout
    assert 0.0 <= metrics["boundary_f1"] <= 1.0

    image = next((small_data / "val").iterdir())
    code, stdout, err = run_cli(["predict", out / "best.pt", image, "--out", tmp_path / "pred"], capsys)
    assert code == 0, err
    mask = cv2.imread(str(tmp_path / "pred" / f"{image.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    color = cv2.imread(str(tmp_path / "pred" / f"{image.stem}_color.png"))[..., ::-1]
    src = cv2.imread(str(image))
    assert mask.shape == src.shape[:2] and mask.max() < 11
    # Each pixel of the colour mask has the CamVid colour of its class.
    _, info, _ = load_model(out / "best.pt")
    palette = np.array(info.colors, np.uint8)
    assert np.array_equal(color, palette[mask])
    assert (tmp_path / "pred" / f"{image.stem}_overlay.png").is_file()

    # Tiled and test-time-augmented inference, and CRF refinement, through the same commands.
    code, stdout, err = run_cli(["predict", out / "best.pt", image, "--out", tmp_path / "tiled", "--mode", "tile",
                                 "--tile", "32x64"], capsys)
    assert code == 0, err
    assert cv2.imread(str(tmp_path / "tiled" / f"{image.stem}_mask.png"), 0).shape == src.shape[:2]
    for extra in (["--mode", "tta", "--scales", "0.5,1.0"], ["--crf"]):
        code, stdout, err = run_cli(["eval", out / "best.pt", "--data", small_data, "--json", tmp_path / "x.json",
                                     *extra], capsys)
        assert code == 0, err
        scored = json.loads((tmp_path / "x.json").read_text())
        assert 0.0 <= scored["miou"] <= 1.0 and scored["ms_per_image"] > 0
    assert scored["crf"] is True
    code, _, err = run_cli(["predict", out / "best.pt", image, "--mode", "tile"], capsys)
    assert code != 0 and "--tile" in err


@pytest.mark.parametrize("args, needle", [
    (["--model", "no_such_net"], "unknown model 'no_such_net'"),
    (["--loss", "ce+crossfire"], "crossfire"),
    (["--img-size", "65x96"], "65x96"),
    (["--optimizer", "rmsprop"], "rmsprop"),
])
def test_cli_bad_options_fail_cleanly(small_data, tmp_path, capsys, args, needle):
    base = ["train", "--model", "unet", "--data", small_data, "--epochs", "1", "--workers", "0", "--no-progress",
            "--out", tmp_path / "out"]
    code, _, err = run_cli(base + args, capsys)
    assert code != 0
    assert needle in err
    assert not (tmp_path / "out" / "last.pt").exists()


@pytest.mark.parametrize("damage", ["corrupt_image", "mask_size", "bad_label"])
def test_bad_data_stops_before_writing(tmp_path, capsys, damage):
    root = tmp_path / "data"
    make_camvid(root, n_train=3, n_val=1, size=(64, 96))
    victim = sorted((root / "train").iterdir())[1]
    annot = root / "trainannot" / victim.name
    if damage == "corrupt_image":
        victim.write_bytes(b"\x89PNG not really")
    elif damage == "mask_size":
        cv2.imwrite(str(annot), np.zeros((32, 96), np.uint8))
    else:
        cv2.imwrite(str(annot), np.full((64, 96), 42, np.uint8))
    code, _, err = run_cli(["train", "--model", "unet", "--data", root, "--epochs", "1", "--workers", "0",
                            "--no-progress", "--out", tmp_path / "out"], capsys)
    assert code != 0
    assert victim.name in err and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_checkpoints(tmp_path, small_data, capsys):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(CheckpointError, match="not an edgeseg checkpoint"):
        load_model(other)
    code, _, err = run_cli(["eval", junk, "--data", small_data], capsys)
    assert code != 0 and "junk.pt" in err


def test_same_seed_same_weights(small_data, tmp_path):
    """Seeds cover init, shuffling and augmentation: two runs give identical weights."""
    runs = []
    for name in ("a", "b"):
        cfg = quick_config(small_data, tmp_path / name, epochs=1, steps_per_epoch=2, scale=(0.75, 1.5),
                           color_jitter=True, rotate=10.0, seed=7)
        train(cfg, log=lambda *_: None)
        runs.append(torch.load(tmp_path / name / "last.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other = quick_config(small_data, tmp_path / "c", epochs=1, steps_per_epoch=2, seed=8)
    train(other, log=lambda *_: None)
    third = torch.load(tmp_path / "c" / "last.pt", weights_only=True)["state_dict"]
    assert not all(torch.equal(runs[0][k], third[k]) for k in third)


def test_early_stopping(small_data, tmp_path):
    # A learning rate of ~0 means val mIoU stops improving once BatchNorm statistics settle.
    messages = []
    cfg = quick_config(small_data, tmp_path / "run", epochs=25, lr=1e-9, warmup_epochs=0, patience=3,
                       hflip=False)
    result = train(cfg, log=messages.append)
    assert result["epochs"] < 25
    assert result["epochs"] == result["best_epoch"] + 3
    assert any("early stop" in m for m in messages)


def test_every_shipped_recipe_is_a_valid_config():
    from edgeseg.losses import parse_loss_spec
    from edgeseg.models import get_entry
    from edgeseg.recipes import list_recipes, load_recipe

    names = list_recipes()
    assert "camvid-bisenetv1-cpu" in names
    for name in names:
        settings = load_recipe(name)
        cfg = TrainConfig.from_dict({**settings, "data": "x"})
        cfg.validate()
        get_entry(cfg.model)
        parse_loss_spec(cfg.loss)
        assert settings["description"]


def test_segmenter_trains_and_builds_for_openvino(small_data, tmp_path):
    """The transformer model goes through the same trainer and exports to OpenVINO with parity."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from edgeseg.build import build

    cfg = quick_config(small_data, tmp_path / "run", model="segmenter", model_kwargs={"depth": 2}, epochs=1,
                       steps_per_epoch=2)
    train(cfg, log=lambda *_: None)
    out = build(tmp_path / "run" / "last.pt", "openvino-cpu", precision="fp32", out=tmp_path / "art",
                data=small_data)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["agreement"] > 0.999


def test_cli_messages_tell_the_wall_time_the_files_and_the_next_step(small_data, tmp_path, capsys):
    import re

    out = tmp_path / "run"
    code, text, err = run_cli(["train", "--model", "unet", "--model-arg", "base_channels=4", "--data", small_data,
                               "--epochs", "1", "--batch-size", "2", "--workers", "0", "--img-size", "64x96",
                               "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    line = next(ln for ln in text.splitlines() if ln.startswith("epoch 1/1"))
    wall, train_s, val_s = map(float, re.search(r"\[([\d.]+)s: train ([\d.]+)s, val ([\d.]+)s\]", line).groups())
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert wall >= train_s + val_s - 0.1 and record["wall_time_s"] == pytest.approx(wall, abs=0.05)
    assert f"next: edgeseg eval {out / 'best.pt'} --data {small_data}" in text
    code, text, err = run_cli(["predict", out / "best.pt", small_data / "val" / "val_0000.png", "--out",
                               tmp_path / "p"], capsys)
    assert code == 0 and "val_0000_mask.png, val_0000_color.png, val_0000_overlay.png" in text, err
    code, text, err = run_cli(["build", out / "best.pt", "--target", "onnxruntime-cpu", "--out", tmp_path / "a"],
                              capsys)
    assert code == 0 and f"next: edgeseg bench {tmp_path / 'a'} --data DIR" in text, err


def test_cpu_precision_auto_takes_bf16_only_with_amx(monkeypatch):
    import edgeseg.machine as machine
    from edgeseg.errors import ConfigError
    from edgeseg.train.trainer import cpu_training_path

    real = machine.cpu_isa()
    amx = {**real, "bf16": True, "flags": ["avx512_bf16", "amx_bf16"]}
    avx512_bf16 = {**real, "bf16": True, "flags": ["avx512_bf16"]}
    none = {**real, "bf16": False, "flags": ["avx2"]}
    monkeypatch.setattr(machine, "cpu_isa", lambda *a: amx)
    assert cpu_training_path("auto")["precision"] == "bf16" and cpu_training_path("auto")["channels_last"]
    assert cpu_training_path("fp32")["precision"] == "fp32"
    monkeypatch.setattr(machine, "cpu_isa", lambda *a: avx512_bf16)
    path = cpu_training_path("auto")
    assert path["precision"] == "fp32" and "no AMX" in path["why"] and "slower" in path["why"]
    assert cpu_training_path("bf16")["precision"] == "bf16"  # asked for by name: still allowed
    monkeypatch.setattr(machine, "cpu_isa", lambda *a: none)
    assert cpu_training_path("auto") == {"precision": "fp32", "channels_last": False,
                                         "why": "auto: this CPU has no bf16"}
    with pytest.raises(ConfigError, match="needs a CPU with bf16"):
        cpu_training_path("bf16")
    with pytest.raises(ConfigError, match="--cpu-precision must be one of"):
        TrainConfig(model="unet", data="x", cpu_precision="fp8").validate()


def test_adam_adds_weight_decay_to_the_gradient():
    from edgeseg.train.trainer import build_optimizer

    model = torch.nn.Conv2d(3, 4, 3)
    opt = build_optimizer(model, TrainConfig(model="unet", data="x", optimizer="adam"))
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 1e-3
    assert opt.param_groups[0]["weight_decay"] == 2e-4 and opt.param_groups[1]["weight_decay"] == 0.0


def test_ema_is_scored_saved_and_resumed(small_data, tmp_path):
    from edgeseg.train.trainer import WeightAverage

    cfg = quick_config(small_data, tmp_path / "run", epochs=2, steps_per_epoch=2, ema_decay=0.9)
    train(cfg, log=lambda *_: None)
    rec = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["ema_val_miou"] <= 1.0 for r in rec)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    ema = torch.load(tmp_path / "run" / "ema.pt", weights_only=True)
    assert ema["weights"] == "ema" and last["train_state"]["ema_updates"] == 4
    for k, v in ema["state_dict"].items():
        assert torch.equal(v, last["ema_state_dict"][k])
    # the average is not the last weights (it moved more slowly), and loads as a model
    names = [k for k in ema["state_dict"] if k.endswith("weight") and ema["state_dict"][k].ndim == 4]
    w = names[-1]
    assert not torch.equal(ema["state_dict"][w], last["state_dict"][w])
    load_model(tmp_path / "run" / "ema.pt")
    train(TrainConfig(model="", data="", epochs=3, out="", progress=False, workers=0),
          resume=tmp_path / "run" / "last.pt", log=lambda *_: None)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_state"]["ema_updates"] == 6
    # the average's arithmetic: the decay, with a shorter horizon at the start
    m = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(m.weight)
    avg = WeightAverage(m, 0.5)
    m.weight.data.fill_(1.0)
    avg.update(m)  # min(0.5, 2/11) -> 0 * 2/11 + 1 * 9/11
    assert avg.model.weight.item() == pytest.approx(9 / 11)
    with pytest.raises(Exception, match="--ema-decay"):
        TrainConfig(model="unet", data="x", ema_decay=1.0).validate()


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_cpu_training_records_what_it_computed_in(small_data, tmp_path, precision, capsys):
    from edgeseg.machine import cpu_isa

    lines = []
    train(quick_config(small_data, tmp_path / precision, epochs=1, cpu_precision=precision), log=lines.append)
    rec = [json.loads(ln) for ln in (tmp_path / precision / "metrics.jsonl").read_text().splitlines()]
    want = "bf16" if precision == "auto" and cpu_isa()["bf16"] else "fp32"
    assert rec[0]["compute"] == want and np.isfinite(rec[0]["train_loss"])
    assert any(f"training on the CPU in {want}" in ln for ln in lines)
