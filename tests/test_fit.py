"""edgeseg fit: the search picks an artifact whose own bench meets the budget, a budget nothing
meets exits 3 naming the closest candidate, bad input is one line with exit 2, a repeated run
resumes from the cache (judged by the new budget), and the HTML shows the front in a browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest
import torch
from helpers import make_camvid, tiny_checkpoint

from edgeseg.bench.budget import Budget
from edgeseg.cli.main import main
from edgeseg.data.info import CAMVID
from edgeseg.fit import Candidate, closest, misses, pareto_front, parse_time_limit
from edgeseg.models import create_model
from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

H, W = 64, 96
FAST = ["--runs", "5", "--warmup", "1", "--memory-runs", "1", "--subset", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    data = make_camvid(root / "camvid", 6, 6, (H, W))
    small = tiny_checkpoint(root / "small.pt", (H, W))
    torch.manual_seed(1)
    big = root / "big.pt"
    save_checkpoint(make_checkpoint(create_model("unet", 11, base_channels=8, depth=3), CAMVID, (H, W)), big)
    return root, data, f"{small},{big}"


def run_fit(work, out, *args, cache=None):
    root, data, models = work
    import os

    old = os.environ.get("EDGESEG_CACHE")
    os.environ["EDGESEG_CACHE"] = str(cache or root / "cache")
    try:
        return main(["fit", "--target", "onnxruntime-cpu", "--data", str(data), "--models", models,
                     "--sizes", "1.0,0.5", "--out", str(out), *FAST, *map(str, args)])
    finally:
        if old is None:
            os.environ.pop("EDGESEG_CACHE")
        else:
            os.environ["EDGESEG_CACHE"] = old


def test_the_choice_meets_the_budget_in_its_own_bench(work, tmp_path, capsys):
    root, data, _ = work
    out = tmp_path / "fit"
    assert run_fit(work, out, "--budget-p99-ms", "500", "--budget-memory-mb", "2000") == 0
    r = json.loads((out / "fit.json").read_text())
    assert len(r["candidates"]) == 8  # 2 models x 2 sizes x (fp32, int8)
    sizes = {tuple(c["size"]) for c in r["candidates"]}
    assert sizes == {(64, 96), (32, 48)}
    chosen = r["chosen"]
    assert chosen and chosen["images_scored"] == 6  # the winner is scored on the whole split
    finalists = [c for c in r["candidates"] if c["images_scored"] == 6 and c["status"] == "measured"]
    assert chosen["miou"] == max(c["miou"] for c in finalists)
    m = json.loads((out / "artifact" / "manifest.json").read_text())
    assert m["fit"]["miou"] == chosen["miou"] and m["input"]["size"] == chosen["size"]
    assert m["precision"] == chosen["precision"]
    js = tmp_path / "bench.json"
    code = main(["bench", str(out / "artifact"), "--data", str(data), "--budget-p99-ms", "500",
                 "--budget-memory-mb", "2000", "--runs", "5", "--warmup", "1", "--memory-runs", "1",
                 "--json", str(js)])
    b = json.loads(js.read_text())
    assert b["budget"]["violations"] == [] or all(v["metric"] == "output check" for v in b["budget"]["violations"])
    assert code in (0, 3) and b["end_to_end_ms"]["p99"] <= 500
    assert abs(b["miou"] - chosen["miou"]) < 1e-9  # the same images, the same artifact
    text = capsys.readouterr().out
    assert "CHOSEN" in text and "front" in text


def test_a_budget_nothing_meets_exits_3_naming_the_closest(work, tmp_path, capsys):
    out = tmp_path / "none"
    assert run_fit(work, out, "--budget-p99-ms", "0.001") == 3
    text = capsys.readouterr().out
    assert "nothing meets the budget" in text and "Closest:" in text and "over the limit 0.001 by" in text
    r = json.loads((out / "fit.json").read_text())
    assert r["chosen"] is None and r["closest"]["misses"][0]["metric"] == "p99"
    assert not (out / "artifact").exists()


def test_a_repeated_run_resumes_from_the_cache(work, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert run_fit(work, tmp_path / "a", "--budget-p99-ms", "500", cache=cache) == 0
    t0 = time.perf_counter()
    assert run_fit(work, tmp_path / "b", "--budget-p99-ms", "500", cache=cache) == 0
    err = capsys.readouterr().err
    assert err.count(": cached (") == 8
    assert time.perf_counter() - t0 < 60
    a = json.loads((tmp_path / "a" / "fit.json").read_text())["chosen"]
    b = json.loads((tmp_path / "b" / "fit.json").read_text())["chosen"]
    assert a["key"] == b["key"] and a["p99_ms"] == b["p99_ms"]
    # the cache keeps measurements, not verdicts: a tighter budget is judged afresh
    assert run_fit(work, tmp_path / "c", "--budget-p99-ms", "0.001", cache=cache) == 3


@pytest.mark.parametrize("args, words", [
    (["--budget-p99-ms", "-1"], "positive"),
    (["--sizes", "1.5"], "(0, 1]"),
    (["--sizes", "big"], "not a number"),
    (["--prune", "1"], "[0, 1)"),
    (["--time-limit", "soon"], "not a duration"),
    (["--precisions", "int4"], "no precision 'int4'"),
])
def test_bad_options_are_one_line_exit_2(work, tmp_path, capsys, args, words):
    assert run_fit(work, tmp_path / "x", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
    assert not (tmp_path / "x").exists()


def test_a_target_that_cannot_run_here_is_refused(work, tmp_path, capsys):
    from edgeseg.targets import load_target, runtime_available

    if runtime_available(load_target("jetson"))[0]:
        pytest.skip("TensorRT and a GPU are here")
    root, data, models = work
    assert main(["fit", "--target", "jetson", "--data", str(data), "--budget-p99-ms", "10",
                 "--out", str(tmp_path / "j")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot run here" in err[0] and "invented" in err[0]


def test_a_time_limit_stops_measuring(work, tmp_path, capsys):
    assert run_fit(work, tmp_path / "t", "--budget-p99-ms", "500", "--time-limit", "0.001s",
                   cache=tmp_path / "fresh") == 3
    r = json.loads((tmp_path / "t" / "fit.json").read_text())
    assert {c["status"] for c in r["candidates"]} == {"not measured"}
    assert "No candidate could be measured" in capsys.readouterr().out


def test_time_limit_units():
    assert parse_time_limit("30m") == 1800 and parse_time_limit("90s") == 90 and parse_time_limit("1.5h") == 5400
    assert parse_time_limit("2") == 120 and parse_time_limit(None) is None


def test_front_and_closest():
    def cand(miou, p99, mem, name):
        c = Candidate(name, "h", (1, 1), 1.0, "fp32", key=name, status="measured", p99_ms=p99, memory_mb=mem)
        c.scores = {"10": miou}
        return c

    a, b, c, d = cand(0.6, 10, 100, "a"), cand(0.5, 5, 100, "b"), cand(0.55, 12, 100, "c"), cand(0.7, 30, 90, "d")
    assert [x.key for x in pareto_front([a, b, c, d])] == ["b", "a", "d"]  # c: a is better and faster
    budget = Budget(p99_ms=4, memory_mb=95)
    assert misses(a, budget) == [("p99", 10, 4, 6), ("memory", 100, 95, 5)]
    # b misses p99 by 25% and memory by 5%; a misses p99 by 150%, d p99 by 650%: b is closest
    assert closest([a, b, c, d], budget).key == "b"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_html_report_shows_the_front_in_a_browser(work, tmp_path):
    import cv2

    out = tmp_path / "h"
    assert run_fit(work, out, "--budget-p99-ms", "500") == 0
    page = out / "fit.html"
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1000,1200"]
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([CHROMIUM, *flags, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=60).stdout
        subprocess.run([CHROMIUM, *flags, f"--user-data-dir={profile}", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, text=True, timeout=60)
    assert 'class="front"' in dom and 'class="budget-region"' in dom and dom.count('class="point"') >= 4
    assert "Chosen:" in dom
    img = cv2.imread(str(shot))
    red = np.all(np.abs(img.astype(int) - [40, 39, 214]) < 40, axis=2).sum()  # the front line (BGR)
    assert red > 50
