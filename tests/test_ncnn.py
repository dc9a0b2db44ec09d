"""The ncnn target, end to end in its real runtime: pnnx converts, ncnn runs the parity check,
bench times it, the demo records with it, and it shows in `edgeseg targets` and the matrix.
Damaged artifacts and a failing converter give one line and leave nothing behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("ncnn")
pytest.importorskip("pnnx")

from helpers import make_camvid_sample, tiny_checkpoint  # noqa: E402

from edgeseg.build import build  # noqa: E402
from edgeseg.cli.main import main  # noqa: E402
from edgeseg.data.info import CAMVID  # noqa: E402
from edgeseg.formats import FormatUnit, get_unit, load_predictor, read_manifest  # noqa: E402
from edgeseg.formats.ncnn.export import blob_names  # noqa: E402
from edgeseg.reference import TorchPredictor  # noqa: E402
from edgeseg.checkpoints import load_model  # noqa: E402

H, W = 64, 96


@pytest.fixture(scope="module")
def art(tmp_path_factory, tiny_camvid):
    root = tmp_path_factory.mktemp("ncnn")
    ckpt = tiny_checkpoint(root / "tiny.pt", (H, W))
    out = build(ckpt, "ncnn-cpu", out=root / "art", data=tiny_camvid, parity_images=4)
    return root, ckpt, out


def test_the_unit_fulfils_the_contract_and_is_listed(capsys):
    unit = get_unit("ncnn")
    assert isinstance(unit, FormatUnit)
    assert unit.available(None) == (True, "")
    assert main(["targets"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ncnn-cpu"))
    assert "\tncnn\t" in line and line.split("\t")[6] == "yes"  # runs here


def test_build_passes_parity_in_ncnn(art):
    root, ckpt, out = art
    m = read_manifest(out)
    assert m["runtime"] == "ncnn" and m["format"] == "ncnn" and m["precision"] == "fp32"
    assert m["files"] == {"model": "model.ncnn.param", "weights": "model.ncnn.bin"}
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.ncnn.bin", "model.ncnn.param",
                                                     "parity.json"]  # no pnnx leftovers
    p = m["parity"]
    assert p["ran"] and p["passed"] and p["runtime"] == "ncnn" and not p.get("proxy")
    assert p["agreement"] >= 0.999 and p["max_abs_logit_diff"] < 1e-3
    assert m["tools"]["ncnn"] and m["tools"]["pnnx"]


def test_ncnn_logits_match_pytorch(art):
    root, ckpt, out = art
    model, info, _ = load_model(ckpt)
    ref = TorchPredictor.from_model(model, info, (H, W))
    pred = load_predictor(out, threads=1)
    image, _ = make_camvid_sample(np.random.default_rng(3), (H, W))
    x, _ = pred.preprocess(image)
    got, want = pred.infer(x), ref.infer(x)
    assert got.shape == want.shape == (1, 11, H, W)
    np.testing.assert_allclose(got, want, atol=1e-3)
    # the blob names the manifest recorded are the .param file's own
    assert blob_names(out / "model.ncnn.param") == (pred.input_blob, pred.output_blob)


def test_fp16_weights_halve_the_file_and_pass_parity(tmp_path, tiny_camvid):
    out = build("enet-camvid", "ncnn-cpu", precision="fp16", out=tmp_path / "fp16", data=tiny_camvid,
                parity_images=2, input_size=(H, W))
    m = read_manifest(out)
    assert m["precision"] == "fp16" and m["ncnn"]["weights"] == "fp16" and m["parity"]["passed"]
    fp32 = build("enet-camvid", "ncnn-cpu", out=tmp_path / "fp32", data=tiny_camvid, parity_images=2,
                 input_size=(H, W))
    ratio = (out / "model.ncnn.bin").stat().st_size / (fp32 / "model.ncnn.bin").stat().st_size
    assert 0.45 < ratio < 0.6


def test_bench_times_the_ncnn_artifact(art, tiny_camvid, tmp_path):
    root, ckpt, out = art
    js = tmp_path / "b.json"
    code = main(["bench", str(out), "--data", str(tiny_camvid), "--runs", "5", "--warmup", "1", "--threads", "1",
                 "--memory-runs", "1", "--budget-p99-ms", "100000", "--budget-memory-mb", "100000",
                 "--json", str(js)])
    r = json.loads(js.read_text())
    assert code in (0, 3)  # an untrained model may be flagged degenerate; the latency is what is checked
    assert r["runtime"] == "ncnn" and r["latency_ms"]["n"] == 5 and r["latency_ms"]["p50"] > 0
    assert r["method"]["model_only"] == "predictor.infer" and r["end_to_end_ms"]["p50"] >= r["latency_ms"]["min"]
    assert r["miou"] is not None and r["accuracy"]["images"] == 4


def test_matrix_has_ncnn_rows(art, tiny_camvid, tmp_path, capsys):
    root, ckpt, out = art
    js = tmp_path / "m.json"
    main(["bench", "--matrix", "--model", str(ckpt), "--targets", "ncnn-cpu", "--data", str(tiny_camvid),
          "--runs", "3", "--warmup", "1", "--threads", "1", "--memory-runs", "1",
          "--budget-p99-ms", "100000", "--budget-memory-mb", "100000", "--json", str(js)])
    rows = json.loads(js.read_text())["matrix"]
    assert {(r["target"], r["precision"]) for r in rows if r.get("result")} == {("ncnn-cpu", "fp32"),
                                                                               ("ncnn-cpu", "fp16")}
    assert "| ncnn-cpu | ncnn |" in capsys.readouterr().out


def test_demo_records_what_ncnn_predicts(art, tmp_path):
    from edgeseg.demo.render import palette_bgr

    root, ckpt, out = art
    rng = np.random.default_rng(0)
    frames = [cv2.cvtColor(make_camvid_sample(rng, (H, W))[0], cv2.COLOR_RGB2BGR) for _ in range(6)]
    video = tmp_path / "clip.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    for f in frames:
        vw.write(f)
    vw.release()
    rec = tmp_path / "out.avi"
    assert main(["demo", "--artifact", str(out), "--source", str(video), "--no-window", "--record", str(rec),
                 "--alpha", "1", "--no-hud"]) == 0
    cap = cv2.VideoCapture(str(video))
    inputs = []
    while (got := cap.read())[0]:
        inputs.append(got[1])
    cap = cv2.VideoCapture(str(rec))
    recorded = []
    while (got := cap.read())[0]:
        recorded.append(got[1])
    assert len(recorded) == len(inputs) == 6
    pred = load_predictor(out, threads=1)
    lut = palette_bgr(CAMVID.colors)
    for got, frame in zip(recorded, inputs):
        np.testing.assert_array_equal(got, lut[pred.predict(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))])


def test_a_damaged_param_file_is_one_line(art, tmp_path, capsys):
    import shutil

    root, ckpt, out = art
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "model.ncnn.param").write_text("7767517\n3 3\nGarbage x 9 9 a b c\n")
    code = main(["bench", str(bad), "--runs", "1", "--warmup", "0", "--memory-runs", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "damaged" in err[0], err


def test_a_failing_converter_leaves_nothing(monkeypatch, tmp_path, capsys):
    from edgeseg.formats.ncnn import export as ncnn_export

    fake = tmp_path / "pnnx"
    fake.write_text("#!/bin/sh\necho 'fatal: unsupported op Foo' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(ncnn_export, "pnnx_executable", lambda: str(fake))
    ckpt = tiny_checkpoint(tmp_path / "t.pt", (H, W))
    code = main(["build", str(ckpt), "--target", "ncnn-cpu", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "pnnx could not convert" in err[0] and "unsupported op Foo" in err[0]
    assert not (tmp_path / "a").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_blob_names_reads_the_graph_and_refuses_other_files(tmp_path):
    from edgeseg.formats.base import BuildError

    param = tmp_path / "m.param"
    param.write_text("7767517\n3 3\nInput in0 0 1 in0\nConvolution c 1 1 in0 1 0=4\nSoftmax s 1 1 1 out0\n")
    assert blob_names(param) == ("in0", "out0")
    param.write_text("not ncnn\n")
    with pytest.raises(BuildError, match="magic"):
        blob_names(param)
    assert os.fspath(Path(param))  # the file itself is left as it was
