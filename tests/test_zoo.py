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
from edgeseg.train import TrainConfig, load_model, train
from edgeseg.train.checkpoint import file_sha256
from edgeseg.zoo.publish import publish, render_zoo_index

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
    # The same weights through the registry's pretrained= path.
    again = create_model(card["model"]["name"], pretrained=card["dataset"]["name"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_shipped_weights_total_size():
    total = sum(zoo.zoo_checkpoint_path(n).stat().st_size for n in SHIPPED)
    assert total <= 40 * 2**20


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
    shipped = torch.load(zoo_dir / "unet-tiny.pt", weights_only=False)
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


def test_zoo_cli(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    if SHIPPED:
        assert main(["zoo", "show", SHIPPED[0]]) == 0
        assert "val mIoU" in capsys.readouterr().out
    assert main(["zoo", "show", "nope"]) == 2
