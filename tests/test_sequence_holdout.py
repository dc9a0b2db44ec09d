"""A validation that predicts generalisation: whole sequences held out by name
(`--holdout-groups`), kept through compression, second phases and fit, and reported as
such on zoo cards."""

from __future__ import annotations

import json

import pytest

from edgeseg.data.holdout import make_holdout, open_split
from edgeseg import zoo
from edgeseg.errors import CheckpointError, ConfigError
from edgeseg.evaluate import evaluate
from edgeseg.publish import attach_recipe_holdout, publish, render_zoo_index, write_card

from helpers import TINY_TRAIN, make_grouped_split, run_cli

TINY = TINY_TRAIN


@pytest.fixture(scope="module")
def split_data(tmp_path_factory):
    return make_grouped_split(tmp_path_factory.mktemp("seq") / "split")


def _ids(ds) -> set[str]:
    return {ds.image_id(i) for i in range(len(ds))}


def test_named_groups_are_held_out_whole():
    ids = [f"{seq}_{i:05d}" for seq in ("0001TP", "0006R0", "0016E5") for i in range(4)]
    h = make_holdout(ids, groups=["0006R0"], from_split="train+val")
    assert h["val"] == [f"0006R0_{i:05d}" for i in range(4)] and h["groups"] == ["0006R0"] and h["named"]
    two = make_holdout(ids, groups=["0016E5", "0001TP"])
    assert len(two["val"]) == 8 and not any(v.startswith("0006R0") for v in two["val"])
    with pytest.raises(ConfigError, match="do not have: its groups are 0001TP, 0006R0, 0016E5"):
        make_holdout(ids, groups=["0005VD"])
    with pytest.raises(ConfigError, match="leave at least one"):
        make_holdout(ids, groups=["0001TP", "0006R0", "0016E5"])
    with pytest.raises(ConfigError, match="needs groups"):
        make_holdout(ids, groups=["0001TP"], group_by="none")


def test_train_holds_out_the_named_group_and_eval_scores_it(split_data, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split", "train+val",
                                 "--holdout-groups", "site2", "--out", out], capsys)
    assert code == 0, err
    assert "--holdout-groups, in place of the dataset's own 'val'" in stdout and "named by --holdout-groups" in stdout
    h = json.loads((out / "config.json").read_text())["holdout"]
    assert h["groups"] == ["site2"] and h["forced"]
    val, train = open_split(split_data, "val", h), open_split(split_data, "train+val", h)
    assert _ids(val) == set(h["val"]) and all(i.startswith("site2_") for i in h["val"])
    assert not any(i.startswith("site2_") for i in _ids(train)) and len(train) + len(val) == 30
    # one part of the joined source (build's calibration reads 'train') leaves the hold-out out too
    part = open_split(split_data, "train", h)
    assert not _ids(part) & set(h["val"]) and _ids(part) < _ids(train)
    scored = evaluate(out / "last.pt", split_data)
    assert scored["images"] == len(val) and scored["held_out"]
    # an unknown group is one line, exit 2
    code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split", "train+val",
                            "--holdout-groups", "site9", "--out", tmp_path / "bad"], capsys)
    assert code == 2 and "site9" in err and len(err.strip().splitlines()) == 1


def test_card_reports_the_sequence_hold_out(split_data, tmp_path, capsys):
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    held_run, val_run = tmp_path / "held", tmp_path / "plain"
    for run, extra in ((held_run, ["--train-split", "train+val", "--holdout-groups", "site1"]), (val_run, [])):
        code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--out", run, *extra], capsys)
        assert code == 0, err
    held = publish(held_run, "held-seq", data=split_data, command="edgeseg train ...", zoo_dir=zoo_dir)
    plain = publish(val_run, "plain-val", data=split_data, command="edgeseg train ...", zoo_dir=zoo_dir)
    assert held["holdout"]["groups"] == ["site1"] and held["holdout"]["val_in_training"]
    assert held["holdout"]["miou"] == held["metrics"]["val_miou"] == pytest.approx(
        evaluate(zoo_dir / "held-seq.pt", split_data)["miou"])
    assert plain["holdout"]["groups"] is None and plain["holdout"]["why"]
    md = (zoo_dir / "held-seq.md").read_text()
    assert "| sequence hold-out mIoU | **" in md and "of site1, whole sequence(s)" in md
    assert "val mIoU | not scored: the val images are in its training data" in md
    assert "Per-class IoU (sequence hold-out site1)" in md
    assert "sequence hold-out mIoU | not measurable on these weights" in (zoo_dir / "plain-val.md").read_text()
    plain["metrics"]["val_miou"] = 0.99
    (zoo_dir / "plain-val.json").write_text(json.dumps(plain))
    index = render_zoo_index(zoo_dir)
    # val flatters: a hold-out score, however low, outranks any val score for the default
    assert "`held-seq` (default)" in index and "(site1) | -" in index and "| - | 0.9900 |" in index
    assert zoo.default_model_name(zoo_dir) == "held-seq" and zoo.holdout_score(plain) is None

    # A separate run of plain-val's recipe with site1 held out gives its card a hold-out score,
    # and its compressed variant's card a pointer to it.
    variant = {**plain, "name": "plain-val-int8", "compression": {
        "variant": "int8_qat", "source": "plain-val", "quantization": {"method": "qat", "target": "cpu"},
        "pruning": None, "source_val_miou": None, "val_miou_change": None}}
    write_card(variant, zoo_dir)
    recipe_run = tmp_path / "recipe-run"
    code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split",
                            "train+val", "--holdout-groups", "site1", "--out", recipe_run], capsys)
    assert code == 0, err
    card = attach_recipe_holdout("plain-val", recipe_run, data=split_data, command="edgeseg train ... (recipe run)",
                                 zoo_dir=zoo_dir, log_dir=tmp_path / "logs")
    run = card["holdout"]["recipe_run"]
    assert run["groups"] == ["site1"] and run["last_epoch"] == 1 and run["images"] == held["holdout"]["images"]
    assert run["last_miou"] == pytest.approx(evaluate(recipe_run / "last.pt", split_data)["miou"])
    assert run["best_miou"] == pytest.approx(evaluate(recipe_run / "best.pt", split_data)["miou"])
    assert card["holdout"]["why"] and card["metrics"]["val_miou"] == 0.99  # its own scores are kept
    assert (tmp_path / "logs" / "plain-val-holdout-run-log.jsonl").is_file()
    assert zoo.holdout_score(zoo.get_card("plain-val", zoo_dir)) == run["best_miou"]
    md = (zoo_dir / "plain-val.md").read_text()
    assert f"| same recipe, site1 held out | **{run['last_miou']:.4f}** at its last epoch (1)" in md
    assert "(site1, recipe run) | 0.9900 |" in render_zoo_index(zoo_dir)
    assert "| class | IoU | same recipe, site1 held out (last epoch) |" in md
    fg = run["per_class_iou_last"]["foreground"]
    assert f"| foreground | {card['metrics']['per_class_iou']['foreground']:.4f} | {fg:.4f} |" in md
    vmd = (zoo_dir / "plain-val-int8.md").read_text()
    assert f"| float source's recipe, site1 held out | {run['last_miou']:.4f} at its last epoch" in vmd
    assert zoo.holdout_score(zoo.get_card("plain-val-int8", zoo_dir)) is None  # never scored there itself
    best, other = (n for n, _ in sorted([("held-seq", held["metrics"]["val_miou"]), ("plain-val", run["best_miou"])],
                                           key=lambda t: -t[1]))
    assert zoo.default_model_name(zoo_dir) == best
    # ... unless it records a CPU build that fails parity (tools/check_zoo_builds.py writes this)
    card = zoo.get_card(best, zoo_dir)
    card["cpu_builds"] = {"date": "2026-12-02", "hardware": "here", "command": "python tools/check_zoo_builds.py",
                          "results": {"openvino-cpu/int8": {"passed": True, "agreement": 0.99, "miou_drop": 0.0},
                                      "onnxruntime-cpu/int8": {"passed": False, "error": "parity check failed"}}}
    write_card(card, zoo_dir)
    assert zoo.failed_cpu_builds(card) == ["onnxruntime-cpu/int8"] and zoo.default_model_name(zoo_dir) == other
    assert "| CPU builds (parity gate) | 1 of 2 pass; failed: onnxruntime-cpu/int8 (parity check failed)" in (
        zoo_dir / f"{best}.md").read_text()

    # Not the card's recipe, no whole group held out, a compressed card: one clear refusal each.
    other = tmp_path / "other-lr"
    code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--lr", "0.05", "--train-split",
                            "train+val", "--holdout-groups", "site1", "--out", other], capsys)
    assert code == 0, err
    with pytest.raises(CheckpointError, match="not 'plain-val's recipe: lr 0.05"):
        attach_recipe_holdout("plain-val", other, data=split_data, command="-", zoo_dir=zoo_dir)
    with pytest.raises(CheckpointError, match="held out no whole groups"):
        attach_recipe_holdout("plain-val", val_run, data=split_data, command="-", zoo_dir=zoo_dir)
    with pytest.raises(CheckpointError, match="compressed variant"):
        attach_recipe_holdout("plain-val-int8", recipe_run, data=split_data, command="-", zoo_dir=zoo_dir)


def test_compression_keeps_the_hold_out(split_data, tmp_path, capsys):
    """Fine-tuning must not see the held-out sequence, and the int8 variant is scored on it."""
    from edgeseg.compress.common import Data

    run = tmp_path / "run"
    code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split", "train+val",
                            "--holdout-groups", "site3", "--out", run], capsys)
    assert code == 0, err
    h = json.loads((run / "config.json").read_text())["holdout"]
    d = Data(split_data, open_split(split_data, "val", h).info, 4, holdout=h)
    assert _ids(d.val) == set(h["val"])
    assert not _ids(d.train) & set(h["val"]) and len(d.train) + len(d.val) == 30


@pytest.mark.slow
def test_compressed_variant_is_scored_on_the_hold_out(split_data, tmp_path, capsys):
    pytest.importorskip("nncf")
    from edgeseg.checkpoints import load_model
    from edgeseg.compress_run import compress

    run = tmp_path / "run"
    code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split", "train+val",
                            "--holdout-groups", "site3", "--out", run], capsys)
    assert code == 0, err
    out = tmp_path / "c"
    compress(run / "best.pt", split_data, qat=True, steps=1, batch_size=2, calib_images=2, runs=1, out=out,
             log=lambda *_: None)
    _, _, ckpt = load_model(out / "int8_qat.pt")
    h = json.loads((run / "config.json").read_text())["holdout"]
    assert ckpt["config"]["holdout"] == h
    scored = evaluate(out / "int8_qat.pt", split_data)
    assert scored["held_out"] and scored["images"] == len(h["val"])


def test_data_check_says_when_val_shares_groups_with_train(split_data, tiny_camvid, capsys):
    code, out, err = run_cli(["data", "check", split_data], capsys)
    assert code == 0, err
    note = [ln for ln in out.splitlines() if ln.startswith("note: val shares name groups")]
    assert len(note) == 1 and "--holdout-groups GROUP" in note[0] and "site0 (6)" in note[0]
    code, out, _ = run_cli(["data", "check", tiny_camvid], capsys)
    assert code == 0 and "shares name groups" not in out


def test_a_second_phase_starts_from_the_weights_and_keeps_the_hold_out(split_data, tmp_path, capsys):
    import torch

    first, second = tmp_path / "p1", tmp_path / "p2"
    code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split", "train+val",
                            "--holdout-groups", "site4", "--img-size", "32x32", "--out", first], capsys)
    assert code == 0, err
    seen = {}

    def spy(self, state, *a, **k):  # the weights the second phase starts from
        seen.update({k: v.clone() for k, v in state.items()})
        return real(self, state, *a, **k)

    real = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = spy
    try:
        code, out, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split", "train+val",
                                  "--init-from", first / "last.pt", "--img-size", "32x48", "--lr", "1e-4",
                                  "--out", second], capsys)
    finally:
        torch.nn.Module.load_state_dict = real
    assert code == 0, err
    assert "--init-from: keeping its hold-out" in out and "of site4" in out
    cfg1, cfg2 = (json.loads((p / "config.json").read_text()) for p in (first, second))
    assert cfg2["holdout"] == cfg1["holdout"] and cfg2["img_size"] == [32, 48]
    saved = torch.load(first / "last.pt", weights_only=True)["state_dict"]
    assert seen and all(torch.equal(seen[k], v) for k, v in saved.items())
    # another model, another split, another hold-out: one line each, exit 2
    for extra in (["--model-arg", "base_channels=8"], ["--train-split", "train"], ["--holdout-groups", "site0"]):
        args = ["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split", "train+val",
                "--init-from", first / "last.pt", "--out", tmp_path / f"bad{len(extra[1])}", *extra]
        code, _, err = run_cli(args, capsys)
        assert code == 2 and "--init-from" in err and len(err.strip().splitlines()) == 1, err


def test_a_resumed_run_counts_its_sittings_and_the_card_says_so(split_data, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--out", run], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "--resume", run / "last.pt", "--epochs", "2", "--workers", "0",
                            "--no-progress"], capsys)
    assert code == 0, err
    log = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["sitting"] for r in log] == [1, 2]
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    card = publish(run, "two-sittings", data=split_data, command="edgeseg train ...", zoo_dir=zoo_dir)
    assert card["training"]["sittings"] == 2 and card["training"]["epochs_run"] == 2
    assert "in 2 sitting(s) of edgeseg train" in (zoo_dir / "two-sittings.md").read_text()


def test_fit_never_scores_a_model_on_its_own_training_images(split_data, tmp_path, capsys):
    from edgeseg.fit import fit, trained_on

    run = tmp_path / "run"
    code, _, err = run_cli(["train", *TINY, "--data", split_data, "--epochs", "1", "--train-split", "train+val",
                            "--holdout-groups", "site1", "--out", run], capsys)
    assert code == 0, err
    ckpt = json.loads((run / "config.json").read_text())
    assert trained_on({"config": ckpt}, "val") and not trained_on({"config": {}}, "val")
    with pytest.raises(ConfigError, match="its own training images"):
        fit("onnxruntime-cpu", split_data, models=str(run / "best.pt"), out=tmp_path / "fit", runs=2, warmup=1)
