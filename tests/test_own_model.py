"""Your own model (``--model FILE.py:FACTORY``) through the real CLI: the models in
tests/own_models/ are written in public code's conventions (a tuple with an auxiliary head and
1/8-resolution logits, a dict output, B,G,R 0..255 input with a positional class count)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import make_camvid, run_cli

OWN = Path(__file__).parent / "own_models"
AUX = f"{OWN / 'aux_heads.py'}:build"
DICT = f"{OWN / 'dict_output.py'}:DictNet"
BGR = f"{OWN / 'bgr255.py'}:make"
QUICK = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--workers", "0", "--no-progress",
         "--img-size", "64x96", "--scale", "1.0,1.0", "--no-color-jitter"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("own_data"), n_train=4, n_val=2, size=(64, 96))


@pytest.fixture(scope="module")
def aux_run(data, tmp_path_factory):
    """A tuple-output model with an auxiliary head, trained a few steps through the CLI."""
    out = tmp_path_factory.mktemp("aux_run")
    from edgeseg.cli.main import main

    code = main(["train", "--model", AUX, "--classes-arg", "n_classes", "--data", str(data), "--out", str(out),
                 *QUICK])
    assert code == 0
    return out


def test_tuple_model_trains_with_its_aux_head_and_records_how_it_was_adapted(aux_run):
    ckpt = torch.load(aux_run / "last.pt", weights_only=True)
    assert ckpt["model"]["name"] == AUX
    kw = ckpt["model"]["kwargs"]
    assert kw["classes_arg"] == "n_classes" and kw["output"] is None and kw["bgr"] is False
    assert kw["size_divisor"] >= 1  # probed once, then kept: loading does not probe again
    assert any(k.startswith("net.aux.") for k in ckpt["state_dict"])
    rec = json.loads((aux_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(rec["train_loss"]) and 0.0 <= rec["val_miou"] <= 1.0


def test_a_checkpoint_naming_code_imports_nothing_without_the_users_model_code(aux_run, data, capsys, tmp_path):
    code, out, err = run_cli(["eval", aux_run / "last.pt", "--data", data], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "never imports" in err and f"--model {AUX}" in err
    code, out, err = run_cli(["eval", aux_run / "last.pt", "--data", data, "--model-code", AUX], capsys)
    assert code == 0 and "mIoU" in out, err
    code, out, err = run_cli(["--trust-model-code", "eval", aux_run / "last.pt", "--data", data], capsys)
    assert code == 0 and "mIoU" in out, err
    # the same checkpoint's code under another path on this machine (a moved repository)
    moved = tmp_path / "elsewhere" / "aux_heads.py"
    moved.parent.mkdir()
    moved.write_text((OWN / "aux_heads.py").read_text())
    code, out, err = run_cli(["eval", aux_run / "last.pt", "--data", data, "--model-code", f"{moved}:build"], capsys)
    assert code == 0, err


def test_a_strangers_checkpoint_naming_os_system_runs_nothing(aux_run, data, capsys, tmp_path, monkeypatch):
    import os

    ckpt = torch.load(aux_run / "last.pt", weights_only=True)
    ckpt["model"]["name"] = "os:system"
    ckpt["model"]["kwargs"] = {"args": {}, "classes_arg": "", "output": None, "size_divisor": 1, "bgr": False}
    torch.save(ckpt, tmp_path / "evil.pt")
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a) or 0)
    code, _, err = run_cli(["eval", tmp_path / "evil.pt", "--data", data], capsys)
    assert code == 2 and "'os:system'" in err and err.count("\n") == 1
    code, _, err = run_cli(["build", tmp_path / "evil.pt", "--target", "onnxruntime-cpu", "--out",
                            tmp_path / "art"], capsys)
    assert code == 2 and "never imports" in err and not (tmp_path / "art").exists()
    assert called == []


def test_dict_model_builds_for_onnxruntime_with_parity(data, capsys, tmp_path):
    code, _, err = run_cli(["train", "--model", DICT, "--data", data, "--out", tmp_path / "run", *QUICK], capsys)
    assert code == 0, err
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["model"]["kwargs"]["size_divisor"] == 4  # its skip connection needs sizes divisible by 4
    code, out, err = run_cli(["build", tmp_path / "run" / "last.pt", "--model-code", DICT, "--target",
                              "onnxruntime-cpu", "--data", data, "--out", tmp_path / "art"], capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["agreement"] > 0.99
    assert manifest["model"]["name"] == DICT


def test_bgr_0_255_model_sees_what_it_expects(data, capsys, tmp_path):
    """The adapted model's class map equals the raw network's on B,G,R 0..255 pixels."""
    code, _, err = run_cli(["train", "--model", BGR, "--classes-arg", "", "--bgr", "--input-range", "255",
                            "--data", data, "--out", tmp_path / "run", *QUICK], capsys)
    assert code == 0, err
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["dataset"]["mean"] == [0.0, 0.0, 0.0]
    assert ckpt["dataset"]["std"] == pytest.approx([1 / 255] * 3)
    image = sorted((data / "val").glob("*.png"))[0]
    code, _, err = run_cli(["predict", tmp_path / "run" / "last.pt", image, "--model-code", BGR, "--out",
                            tmp_path / "pred"], capsys)
    assert code == 0, err
    ours = cv2.imread(str(tmp_path / "pred" / f"{image.stem}_mask.png"), cv2.IMREAD_UNCHANGED)

    import importlib.util

    spec = importlib.util.spec_from_file_location("bgr255_direct", OWN / "bgr255.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.make(11)
    net.load_state_dict({k[len("net."):]: v for k, v in ckpt["state_dict"].items()})
    bgr = cv2.imread(str(image)).astype(np.float32)  # what the network was written for
    with torch.no_grad():
        logits = net.eval()(torch.from_numpy(bgr).permute(2, 0, 1)[None])
        logits = torch.nn.functional.interpolate(logits, size=bgr.shape[:2], mode="bilinear", align_corners=False)
    assert (logits.argmax(1)[0].numpy() == ours).mean() > 0.999


@pytest.mark.parametrize("args, needle", [
    (["--model", "nothing_here.py:build"], "no such file"),
    (["--model", "not a spec:"], "is not FILE.py:FACTORY"),
    (["--model", f"{OWN / 'hostile.py'}:raises"], "the factory raised RuntimeError: weights file not found"),
    (["--model", f"{OWN / 'hostile.py'}:not_a_module"], "returned a dict, not a torch nn.Module"),
    (["--model", f"{OWN / 'hostile.py'}:FiveD"], "5-D tensor"),
    (["--model", f"{OWN / 'hostile.py'}:WrongClasses"], "not N x 11 x h x w"),
    (["--model", f"{OWN / 'hostile.py'}:missing"], "has no 'missing'"),
    (["--model", f"{OWN / 'aux_heads.py'}:build"], "--classes-arg"),  # it takes n_classes, not num_classes
    (["--model", "unet", "--bgr"], "adapt a model of your own"),
])
def test_bad_own_models_are_one_line_before_anything_is_written(data, capsys, tmp_path, args, needle):
    code, _, err = run_cli(["train", "--data", data, "--out", tmp_path / "out", *QUICK, *args], capsys)
    assert code == 2 and needle in err, err
    assert err.count("\n") == 1
    assert not (tmp_path / "out" / "last.pt").exists()


def test_published_weights_start_training_and_a_mismatch_is_one_line(data, capsys, tmp_path):
    """--init-from a plain state dict (.safetensors; .pth wrapped in {"state_dict"} with DDP's
    "module." prefix), as public code publishes them; read without running code."""
    from safetensors.torch import save_file

    from edgeseg.models import create_model, own

    own.allow(AUX)
    net = create_model(AUX, 11, classes_arg="n_classes").net
    state = {k: v.clone() for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pth")
    base = ["train", "--model", AUX, "--classes-arg", "n_classes", "--data", data, *QUICK, "--lr", "1e-9"]
    for name in ("w.safetensors", "w.pth"):
        code, _, err = run_cli([*base, "--init-from", tmp_path / name, "--out", tmp_path / f"run-{name}"], capsys)
        assert code == 0, err
        trained = torch.load(tmp_path / f"run-{name}" / "last.pt", weights_only=True)["state_dict"]
        w = "net.head.weight"
        assert torch.allclose(trained[w], state["head.weight"], atol=1e-5)  # started from them (lr ~ 0)
    # the same weights for 19 classes (a Cityscapes head) do not fit 11: one line naming the keys
    net19 = create_model(AUX, 19, classes_arg="n_classes").net
    torch.save(net19.state_dict(), tmp_path / "w19.pth")
    code, _, err = run_cli([*base, "--init-from", tmp_path / "w19.pth", "--out", tmp_path / "r19"], capsys)
    assert code == 2 and err.count("\n") == 1 and "other shape: head.weight (19, 16, 1, 1)" in err, err
    assert not (tmp_path / "r19" / "last.pt").exists()
    # a pickled object (it could run code) is refused, not loaded
    torch.save({"state_dict": state, "opt": torch.optim.SGD(net.parameters(), lr=0.1)}, tmp_path / "pickled.pth")
    code, _, err = run_cli([*base, "--init-from", tmp_path / "pickled.pth", "--out", tmp_path / "rp"], capsys)
    assert code == 2 and "does not unpickle" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_own_model_compresses_builds_benches_fits_and_runs_in_the_demo(aux_run, data, capsys, tmp_path):
    """The done-bar of a model of your own: QAT, pruning (its side output's layer follows the
    pruned features), every CPU target and Coral with parity, bench, fit and the demo."""
    ckpt, code_opt = aux_run / "last.pt", ["--model-code", AUX]

    def ok(args):
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        return out + err

    out = ok(["compress", ckpt, *code_opt, "--data", data, "--qat", "--steps", "2", "--out", tmp_path / "qat"])
    assert f"--model-code {AUX}" in out  # the next command it suggests works as printed
    ok(["compress", ckpt, *code_opt, "--data", data, "--prune", "0.5", "--steps", "2", "--out", tmp_path / "prune"])
    ok(["compress", ckpt, *code_opt, "--data", data, "--target", "edgetpu", "--ptq", "--out", tmp_path / "tpu"])
    builds = [(ckpt, "onnxruntime-cpu", "int8"), (tmp_path / "qat" / "int8_qat.pt", "openvino-cpu", None),
              (tmp_path / "prune" / "pruned.pt", "openvino-cpu", None), (ckpt, "ncnn-cpu", None),
              (ckpt, "jetson", None), (tmp_path / "tpu" / "int8_ptq.pt", "coral", None)]
    for i, (source, target, precision) in enumerate(builds):
        art = tmp_path / f"art{i}"
        ok(["build", source, *code_opt, "--target", target, "--data", data, "--out", art,
            *(["--precision", precision] if precision else [])])
        parity = json.loads((art / "manifest.json").read_text())["parity"]
        assert parity["passed"], (target, parity)
    # two training steps leave the model predicting one class, which bench's output check catches (exit 3)
    code, _, err = run_cli(["bench", tmp_path / "art1", "--data", data, "--runs", "5", "--warmup", "1", "--json",
                            tmp_path / "b.json"], capsys)
    bench = json.loads((tmp_path / "b.json").read_text())
    assert code == 3 and "degenerate" in json.dumps(bench), err
    assert bench["miou"] is not None and bench["latency_ms"]["p50"] > 0
    ok(["fit", "--target", "onnxruntime-cpu", "--data", data, "--models", ckpt, *code_opt, "--sizes", "1.0",
        "--precisions", "fp32", "--runs", "5", "--memory-runs", "0", "--budget-p99-ms", "10000",
        "--out", tmp_path / "fit"])
    assert json.loads((tmp_path / "fit" / "fit.json").read_text())["chosen"]
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for _ in range(5):
        writer.write(np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    writer.release()
    ok(["demo", "--artifact", tmp_path / "art1", "--source", clip, "--no-window", "--record", tmp_path / "demo.mp4"])
    assert cv2.VideoCapture(str(tmp_path / "demo.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) >= 1


def test_an_op_the_exporter_rejects_is_one_line_naming_the_layer(data, capsys, tmp_path):
    spec = f"{OWN / 'hostile.py'}:PyramidPool"
    code, _, err = run_cli(["train", "--model", spec, "--data", data, "--out", tmp_path / "run", *QUICK], capsys)
    assert code == 0, err
    code, _, err = run_cli(["build", tmp_path / "run" / "last.pt", "--model-code", spec, "--target",
                            "onnxruntime-cpu", "--img-size", "70x100", "--out", tmp_path / "art"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot export adaptive pooling" in err and "layers net.pool" in err and "--img-size" in err
    assert not (tmp_path / "art").exists()


def test_a_size_your_model_refuses_is_named_by_your_model():
    from edgeseg.errors import InputSizeError
    from edgeseg.models import create_model, own

    own.allow(DICT)
    with pytest.raises(InputSizeError, match=r"^DictNet \(.*dict_output.py:DictNet\) needs height and width "
                                             r"divisible by 4"):
        create_model(DICT, 11).check_input_size(30, 30)
