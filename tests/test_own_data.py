"""A user's own data: a flat images/ + masks/ folder with no val split gets a seeded hold-out
(whole groups where the names carry a prefix), `data check` reports the class balance and
the loss it suggests, `--loss auto` takes it, and degenerate outputs are flagged in eval
and build (a failure where the artifact degenerates but its source does not)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeseg.data.holdout import make_holdout, open_split
from edgeseg.errors import ConfigError, DataError
from edgeseg.losses import suggest_loss
from edgeseg.metrics import class_map_counts, output_flags

from helpers import TINY_TRAIN, make_flat_binary, make_grouped_split, run_cli

TINY = TINY_TRAIN


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    return make_flat_binary(tmp_path_factory.mktemp("own") / "sites", n=30, size=(32, 48), groups=6)


# -- the hold-out

def test_holdout_keeps_groups_whole_and_is_seeded():
    ids = [f"seq{g}_{i:03d}" for g in range(5) for i in range(20)]
    h = make_holdout(ids, 0.2, seed=3)
    assert h["by"] == "prefix" and len(h["groups"]) == 1
    held = set(h["val"])
    # every image of a held-out group is held out, and no image of the others
    assert held == {i for i in ids if i.split("_")[0] in h["groups"]}
    assert make_holdout(ids, 0.2, seed=3) == h
    assert {make_holdout(ids, 0.2, seed=s)["groups"][0] for s in range(8)} != {h["groups"][0]}


def test_holdout_by_image_where_names_carry_no_group():
    ids = [f"img{i:04d}" for i in range(50)]
    h = make_holdout(ids, 0.1, seed=0)
    assert h["by"] == "image" and len(h["val"]) == 5 and set(h["val"]) <= set(ids)
    assert make_holdout(ids, 0.1, seed=1)["val"] != h["val"]
    # two large groups: holding one out would take half the data, so single images are held out
    two = [f"{g}_{i}" for g in ("left", "right") for i in range(20)]
    h2 = make_holdout(two, 0.1)
    assert h2["by"] == "image" and len(h2["val"]) == 4 and "near-duplicates" in h2["note"]


def test_holdout_regex_groups_and_bad_values():
    ids = [f"scan_p{p:02d}_slice{s}" for p in range(8) for s in range(5)]
    h = make_holdout(ids, 0.25, group_by=r"_p(\d+)_")
    assert h["by"].startswith("pattern") and all(len([i for i in h["val"] if f"_p{g}_" in i]) == 5 for g in h["groups"])
    with pytest.raises(ConfigError, match="--val-fraction"):
        make_holdout(ids, 1.5)
    with pytest.raises(ConfigError, match="regular expression"):
        make_holdout(ids, group_by="(")
    with pytest.raises(ConfigError, match="1 group"):
        make_holdout(ids, group_by="scan")
    with pytest.raises(DataError, match="at least 2"):
        make_holdout(["only"], 0.1)


def test_open_split_divides_the_source_split(grouped):
    ids = sorted(p.stem for p in (grouped / "images").iterdir())
    h = make_holdout(ids, 0.1, seed=0)
    val, train = open_split(grouped, "val", h), open_split(grouped, "train", h)
    val_ids = {val.image_id(i) for i in range(len(val))}
    train_ids = {train.image_id(i) for i in range(len(train))}
    assert val_ids == set(h["val"]) and not val_ids & train_ids and len(val_ids | train_ids) == 30
    assert open_split(grouped, "test", h) is None
    gone = {**h, "val": h["val"] + ["not_there"]}
    with pytest.raises(DataError, match="not_there"):
        open_split(grouped, "val", gone)


# -- data check, --loss auto

def test_suggested_loss_follows_the_class_balance():
    assert suggest_loss([500, 480], ["a", "b"])[0] == "ce"
    spec, why = suggest_loss([970, 30], ["background", "crack"])
    assert spec == "ce+dice" and "crack" in why and "3.0%" in why
    spec, why = suggest_loss([5000, 4000, 3000, 20], ["road", "sky", "building", "pole"])
    assert spec == "wce:enet" and "pole" in why


def test_data_check_reports_balance_loss_and_split(grouped, capsys):
    code, out, err = run_cli(["data", "check", grouped], capsys)
    assert code == 0, err
    assert "class balance of 'train': 25 training images (after the hold-out)" in out and "foreground" in out
    assert "suggested loss: " in out
    assert "no 'val' split: edgeseg train would hold out 5 of 30 'train' images" in out
    assert "whole groups by name prefix" in out


def test_train_on_a_flat_folder_holds_out_val_and_keeps_it(grouped, tmp_path, capsys):
    out = tmp_path / "run"
    _, checked, _ = run_cli(["data", "check", grouped], capsys)
    suggested = checked.split("suggested loss: ")[1].split()[0]
    code, stdout, err = run_cli(["train", *TINY, "--data", grouped, "--epochs", "1", "--loss", "auto",
                                 "--out", out], capsys)
    assert code == 0, err
    assert "no 'val' split in" in stdout and "5 of 30 'train' images" in stdout
    assert f"--loss auto: {suggested} (" in stdout  # what data check suggested
    assert "25 train / 5 val images" in stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["loss"] == suggested and len(cfg["holdout"]["val"]) == 5
    # resume and eval use the recorded split, not a new one
    code, stdout, err = run_cli(["train", "--resume", out / "last.pt", "--epochs", "2", "--workers", "0",
                                 "--no-progress"], capsys)
    assert code == 0, err
    assert "no 'val' split" not in stdout
    assert json.loads((out / "config.json").read_text())["holdout"] == cfg["holdout"]
    code, stdout, err = run_cli(["eval", out / "last.pt", "--data", grouped, "--json", tmp_path / "m.json"], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "m.json").read_text())
    assert scored["images"] == 5 and scored["held_out"] and "held out" in err


def test_holdout_val_holds_out_whole_groups_of_train_plus_val(tmp_path, capsys):
    """A dataset with its own val split whose frames share groups with train (as CamVid's do):
    --train-split train+val --holdout-val trains on some groups and scores a whole other one."""
    data = make_grouped_split(tmp_path / "split")
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", *TINY, "--data", data, "--epochs", "1", "--train-split", "train+val",
                                 "--holdout-val", "--val-fraction", "0.2", "--out", out], capsys)
    assert code == 0, err
    assert "--holdout-val, in place of the dataset's own 'val'" in stdout and "6 of 30 'train+val' images" in stdout
    h = json.loads((out / "config.json").read_text())["holdout"]
    assert h["forced"] and len(h["groups"]) == 1 and h["from"] == "train+val"
    assert "24 train / 6 val images" in stdout
    code, _, err = run_cli(["eval", out / "last.pt", "--data", data, "--json", tmp_path / "m.json"], capsys)
    scored = json.loads((tmp_path / "m.json").read_text())
    assert code == 0 and scored["images"] == 6 and "--holdout-val" in scored["held_out"]
    val, train = open_split(data, "val", h), open_split(data, "train+val", h)
    assert {val.image_id(i) for i in range(len(val))} == set(h["val"]) and len(train) == 24


def test_malformed_holdout_in_a_config_is_refused(grouped, tmp_path):
    from edgeseg.train import TrainConfig
    from edgeseg.train.trainer import open_train_val

    cfg = TrainConfig(model="unet", data=str(grouped), out=str(tmp_path / "r"), holdout={"from": "train", "val": 3})
    with pytest.raises(ConfigError, match="malformed 'holdout'"):
        open_train_val(cfg)


def test_val_fraction_on_data_with_a_val_split_is_refused(tmp_path, capsys):
    from helpers import make_camvid

    data = make_camvid(tmp_path / "cv", n_train=4, n_val=2, size=(32, 48))
    code, _, err = run_cli(["train", *TINY, "--data", data, "--epochs", "1", "--val-fraction", "0.2",
                            "--out", tmp_path / "r"], capsys)
    assert code == 2 and "has a 'val' split" in err and len(err.strip().splitlines()) == 1


# -- degenerate outputs

def test_output_flags():
    names = ["bg", "road", "pole"]
    assert output_flags([0, 0, 0, 7], class_names=names)[0]["kind"] == "empty"
    assert output_flags([100, 0, 0], class_names=names)[0]["kind"] == "single_class"
    assert output_flags([60, 40, 0], class_names=names, images=2, single_class_images=2)[0]["kind"] == \
        "one_class_per_image"
    flags = output_flags([60, 40, 0], [50, 45, 5], class_names=names)
    assert [f["kind"] for f in flags] == ["collapsed"] and flags[0]["classes"] == ["pole"]
    assert output_flags([60, 40, 0], [50, 49.5, 0.5], class_names=names) == []  # 0.5%: too rare to call
    c = class_map_counts([np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)],
                         [np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8)], num_classes=3)
    assert c["predicted"][:3].tolist() == [4, 4, 0] and c["truth"].tolist() == [4, 0, 0]
    assert c["single_class_images"] == 2


def _degenerate_checkpoint(src, dst):
    """``src`` with its last classifier forced to say class 0 everywhere."""
    from edgeseg.train.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(src)
    sd = ckpt["state_dict"]
    key = [k for k, v in sd.items() if k.endswith("weight") and v.ndim == 4 and v.shape[0] == 2][-1]
    sd[key] = torch.zeros_like(sd[key])
    bias = key[: -len("weight")] + "bias"
    sd[bias] = torch.tensor([5.0, -5.0])
    ckpt.pop("train_state", None)
    save_checkpoint(ckpt, dst)
    return dst


def test_degenerate_model_warns_in_eval_and_build_and_artifact_failure(grouped, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", *TINY, "--data", grouped, "--epochs", "2", "--loss", "ce+dice", "--out", out],
                           capsys)
    assert code == 0, err
    dead = _degenerate_checkpoint(out / "best.pt", tmp_path / "dead.pt")
    code, _, err = run_cli(["eval", dead, "--data", grouped], capsys)
    assert code == 0 and "warning: single-class output" in err
    # build: a degenerate source builds, with a warning; parity agrees (both sides are degenerate)
    code, stdout, err = run_cli(["build", dead, "--target", "openvino-cpu", "--data", grouped,
                                 "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    assert "the source model is degenerate on the parity images (single-class output" in stdout + err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["parity"]["flags"]["reference"] and manifest["source"]["holdout"]["val"]
    # bench scores the held-out images (the manifest carries the list); --max-images caps them
    code, _, err = run_cli(["bench", tmp_path / "a", "--data", grouped, "--max-images", "2", "--runs", "2",
                            "--warmup", "1", "--memory-runs", "1", "--json", tmp_path / "b.json"], capsys)
    report = json.loads((tmp_path / "b.json").read_text())
    assert code == 3 and report["accuracy"]["images"] == 2 and "single-class output" in report["flags"][0]

    # an artifact that degenerates where its source does not fails parity
    import edgeseg.build as build_mod

    real = build_mod._prediction_run

    def artifact_says_background(predictor, images, *args, **kw):
        preds, raws, miou = real(predictor, images, *args, **kw)
        if predictor.runtime != "torch":
            preds = [np.zeros_like(p) for p in preds]
        return preds, raws, miou

    monkeypatch.setattr(build_mod, "_prediction_run", artifact_says_background)
    code, stdout, err = run_cli(["build", out / "best.pt", "--target", "openvino-cpu", "--data", grouped,
                                 "--out", tmp_path / "b"], capsys)
    assert code != 0 and "the artifact degenerates where the source does not: single-class output" in err
    assert not (tmp_path / "b").exists()
