"""Time each step of the demo's frame loop alone, for one artifact: what decode, colour
conversion, pre-processing, the model call, post-processing, drawing and mp4v encoding cost
per frame, with the plain Predictor and with the demo's in-graph steps
(``fuse_argmax`` / ``fuse_preprocessing``). Median of ``--runs`` calls each.

    python tools/profile_demo_steps.py ARTIFACT [--images DIR] [--threads N] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CAMVID_VAL = REPO.parent / "shared" / "data" / "camvid" / "val"


def median_ms(fn, runs: int):
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--images", type=Path, default=CAMVID_VAL, help="folder of frames (default: CamVid val)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args(argv)

    from edgeseg.demo.render import Renderer, present_classes
    from edgeseg.formats import load_predictor

    files = sorted(p for p in a.images.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:20]
    if not files:
        sys.exit(f"no images in {a.images}")
    frames = [cv2.imread(str(p)) for p in files]
    h, w = frames[0].shape[:2]
    work = Path(tempfile.mkdtemp(prefix="profile_demo_"))
    video = work / "v.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for f in frames:
        vw.write(f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)))
    vw.release()
    cap = cv2.VideoCapture(str(video))

    def decode():
        ok, f = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, f = cap.read()
        return f

    rows = []
    ms, frame = median_ms(decode, a.runs)
    rows.append(("decode (mp4v, OpenCV)", ms))
    ms, rgb = median_ms(lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), a.runs)
    rows.append(("BGR -> RGB", ms))
    for label, fused in (("plain Predictor", False), ("demo's in-graph steps", True)):
        p = load_predictor(a.artifact, threads=a.threads)
        done = [name for name, ok in (("argmax", fused and p.fuse_argmax()),
                                      ("normalisation", fused and p.fuse_preprocessing())) if ok]
        tag = f"{label}{' (' + ', '.join(done) + ' in graph)' if fused else ''}"
        ms, (x, meta) = median_ms(lambda: p.preprocess(rgb), a.runs)
        rows.append((f"pre-processing, {tag}", ms))
        ms, y = median_ms(lambda: p.infer(x), a.runs)
        rows.append((f"model call, {tag}", ms))
        ms, cls = median_ms(lambda: p.postprocess(y, meta), a.runs)
        rows.append((f"post-processing, {tag}", ms))
    m = p.manifest
    r = Renderer(m["classes"], m["colors"], alpha=0.5, mode="overlay", hud=True, model_name="x")
    ms, color = median_ms(lambda: r.colorize(cls), a.runs)
    rows.append(("colour (cv2.applyColorMap)", ms))
    ms, _ = median_ms(lambda: np.take(r.lut, cls, axis=0), a.runs)
    rows.append(("  for comparison: numpy palette lookup", ms))
    ms, pic = median_ms(lambda: r.blend(frame, color), a.runs)
    rows.append(("blend (cv2.addWeighted)", ms))
    ms, _ = median_ms(lambda: present_classes(cls), a.runs)
    rows.append(("classes present (cv2.calcHist)", ms))
    ms, _ = median_ms(lambda: r.compose(frame, cls, {"fps": 30.0, "model_ms": 20.0, "e2e_ms": 40.0}), a.runs)
    rows.append(("whole picture (colour, blend, legend, HUD)", ms))
    out = cv2.VideoWriter(str(work / "o.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    ms, _ = median_ms(lambda: out.write(pic), a.runs)
    out.release()
    rows.append(("encode (mp4v, OpenCV)", ms))

    print(f"artifact {a.artifact} ({m.get('target')} {m.get('precision')}), frames {h}x{w}, "
          f"threads {a.threads or 'runtime default'}, median of {a.runs} calls")
    print("| step | ms |\n|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
