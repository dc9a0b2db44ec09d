"""The zoo: shipped checkpoints load offline and match their cards; publishing a run works."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeseg import zoo
from edgeseg.cli.main import main
from edgeseg.errors import CheckpointError, ModelError
from edgeseg.evaluate import evaluate
from edgeseg.models import count_params, create_model
from edgeseg.predict import predict_image
from edgeseg.checkpoints import load_model
from edgeseg.train import TrainConfig, train
from edgeseg.train.checkpoint import file_sha256
from edgeseg.publish import publish, render_zoo_index

SHIPPED = zoo.list_zoo()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_matches_card(name):
    card = zoo.get_card(name)
    path = zoo.zoo_checkpoint_path(name)
    assert file_sha256(path) == card["weights"]["sha256"]
    assert path.stat().st_size <= 15 * 2**20
    model, info, ckpt = load_model(name)
    assert count_params(model) == card["params"]
    assert list(info.classes) == card["dataset"]["classes"]
    h, w = 360, 480
    mask = predict_image(model, info, np.zeros((h, w, 3), np.uint8))
    assert mask.shape == (h, w) and mask.max() < info.num_classes
    if card.get("compression"):  # an int8 variant: quantizers rebuilt from the file, no data needed
        if ckpt["quantization"].get("backend") == "pt2e":  # for TFLite: a PT2E graph's fake quantizers
            from torchao.quantization.pt2e import FakeQuantizeBase

            n = sum(isinstance(m, FakeQuantizeBase) for m in model.modules())
        else:  # NNCF's
            from edgeseg.compress.quant import quantizer_count

            n = quantizer_count(model)
        assert n > 0 and card["compression"]["source"] in SHIPPED
        return
    # The same weights through the registry's pretrained= path.
    again = create_model(card["model"]["name"], pretrained=card["dataset"]["name"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_shipped_weights_total_size():
    total = sum(zoo.zoo_checkpoint_path(n).stat().st_size for n in SHIPPED)
    assert total <= 40 * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_eval_reproduces_card_miou(name, camvid_root):
    card = zoo.get_card(name)
    scores = evaluate(name, camvid_root, "val", batch_size=2)
    assert scores["miou"] == pytest.approx(card["metrics"]["val_miou"], abs=0.005)


def test_unknown_zoo_names():
    with pytest.raises(ModelError, match="zoo"):
        load_model("no-such-model-camvid")
    with pytest.raises(ModelError, match="no 'cityscapes' weights"):
        create_model("enet", pretrained="cityscapes")


def test_publish_run_into_a_zoo(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(model="unet", model_kwargs={"base_channels": 8}, data=str(tiny_camvid), out=str(run), epochs=2,
                      steps_per_epoch=2, batch_size=4, workers=0, progress=False, img_size=(64, 96)),
          log=lambda *_: None)
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    card = publish(run, "unet-tiny", data=tiny_camvid, command="edgeseg train --model unet ...", zoo_dir=zoo_dir,
                   log_dir=tmp_path / "logs")
    assert zoo.list_zoo(zoo_dir) == ["unet-tiny"]
    ckpt = zoo.load_zoo_checkpoint("unet-tiny", zoo_dir)
    shipped = torch.load(zoo_dir / "unet-tiny.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in shipped["state_dict"].values() if v.is_floating_point())
    assert "train_state" not in shipped
    assert card["training"]["epochs_run"] == 2 and card["training"]["wall_time_s"] > 0
    assert set(card["metrics"]["per_class_iou"]) == set(card["dataset"]["classes"])
    assert "val mIoU" in (zoo_dir / "unet-tiny.md").read_text()
    assert (tmp_path / "logs" / "unet-tiny-train-log.jsonl").is_file()
    index = render_zoo_index(zoo_dir)
    assert "`unet-tiny` (default)" in index and f"{card['metrics']['val_miou']:.4f}" in index
    # The card's score is the one the fp16 weights give, so eval reproduces it exactly.
    assert evaluate(zoo_dir / "unet-tiny.pt", tiny_camvid)["miou"] == pytest.approx(card["metrics"]["val_miou"])
    assert not any(torch.isnan(v).any() for v in ckpt["state_dict"].values() if v.is_floating_point())

    # A tampered file is refused.
    (zoo_dir / "unet-tiny.pt").write_bytes((zoo_dir / "unet-tiny.pt").read_bytes() + b"x")
    with pytest.raises(CheckpointError, match="sha256"):
        zoo.load_zoo_checkpoint("unet-tiny", zoo_dir)


@pytest.mark.slow
def test_publish_compressed_variant(tiny_camvid, tmp_path):
    pytest.importorskip("nncf")
    from edgeseg.compress_run import compress
    from edgeseg.compress.quant import quantizer_count
    from edgeseg.data.info import CAMVID
    from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint
    from edgeseg.publish import publish_compressed

    torch.manual_seed(0)
    src = tmp_path / "tiny.pt"
    save_checkpoint(make_checkpoint(create_model("bisenetv1", 11, widths=(8, 16, 32, 64)), CAMVID, (64, 96)), src)
    out = tmp_path / "c"
    compress(src, tiny_camvid, qat=True, steps=1, batch_size=2, val_images=2, calib_images=2, runs=1, out=out,
             log=lambda *_: None)
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    with pytest.raises(CheckpointError, match="not a compressed checkpoint"):
        publish_compressed(src, "x", data=tiny_camvid, command="-", zoo_dir=zoo_dir)
    card = publish_compressed(out / "int8_qat.pt", "tiny-int8", data=tiny_camvid, command="edgeseg compress ...",
                              zoo_dir=zoo_dir)
    c = card["compression"]
    assert c["variant"] == "int8_qat" and c["quantization"]["method"] == "qat" and c["source"] == str(src)
    assert c["val_miou_change"] == pytest.approx(card["metrics"]["val_miou"] - c["source_val_miou"])
    shipped = torch.load(zoo_dir / "tiny-int8.pt", weights_only=True)
    dtypes = {k.startswith("__nncf_hooks."): v.dtype for k, v in shipped["state_dict"].items() if v.is_floating_point()}
    assert dtypes == {True: torch.float32, False: torch.float16}  # quantizer scales stay fp32
    model, _, _ = load_model(zoo_dir / "tiny-int8.pt")
    assert quantizer_count(model) > 0
    assert evaluate(zoo_dir / "tiny-int8.pt", tiny_camvid)["miou"] == pytest.approx(card["metrics"]["val_miou"])
    assert "compressed from" in (zoo_dir / "tiny-int8.md").read_text()
    # a compressed variant is never the default model (it would force every build to int8)
    with pytest.raises(ModelError, match="empty"):
        zoo.default_model_name(zoo_dir)


def test_zoo_cli(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    if SHIPPED:
        assert main(["zoo", "show", SHIPPED[0]]) == 0
        assert "val mIoU" in capsys.readouterr().out
    assert main(["zoo", "show", "nope"]) == 2
