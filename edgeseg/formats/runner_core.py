"""The device side of a remote bench: this file, followed by a format unit's ``plain.py``, is
the one self-contained script ``edgeseg bench --remote`` copies to the device. It needs only
Python 3, numpy and the runtime there (neither edgeseg nor torch).

It reads ``manifest.json`` and ``inputs.npz`` (uint8 images already padded or resized to the
model's size on the user's machine; :func:`input_maker` normalises them here) in its folder, times the runtime's bare call
as a local bench does (warm-up, then timed runs), runs every image of ``inputs.npz`` and
writes their class maps (argmax on the device) to ``outputs.npz``, and prints one JSON line:
latency, peak memory, the device's machine info and runtime versions. A runtime that is
missing is a JSON error line and exit code 3.

With ``--source SRC`` it runs ``edgeseg demo --remote`` instead: frames from the device's
camera (an index) or file, each pre-processed here (:func:`prepare`, the same code
``Predictor.preprocess`` runs), run, reduced to a class map, and streamed to stdout as framed
records (:func:`emit`: the frame as JPEG, the class map zlib-packed, the timings), then an
end record. That mode needs OpenCV (``cv2``) on the device too.

The unit's ``plain.py`` defines ``load(folder, manifest, threads)`` (an object with
``set_input(x)``, ``run()``, ``output()``) and ``versions()``.
"""

import json
import os
import platform
import sys
import time

import numpy as np

EXIT_MISSING = 3
EXIT_SOURCE = 4
INT_DTYPES = ("int8", "uint8", "int16", "int32")


# -- pre-processing (Predictor.preprocess runs these too, so device and laptop agree)

def fit_image(image, size, fit, fill):
    """uint8 HxWx3 -> the model's HxW: ``resize``, or ``pad`` bottom/right with ``fill`` (an
    image larger than the size is first scaled down keeping its aspect). Returns
    ``(image, {"orig": (h, w), "content": (h, w)})``."""
    import cv2

    h, w = image.shape[:2]
    th, tw = size
    meta = {"orig": (h, w)}
    if fit == "resize":
        img = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR) if (h, w) != (th, tw) else image
        meta["content"] = (th, tw)
        return img, meta
    scale = min(1.0, th / h, tw / w)
    if scale < 1.0:
        nh, nw = max(1, min(th, round(h * scale))), max(1, min(tw, round(w * scale)))
        img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    else:
        img, nh, nw = image, h, w
    if (nh, nw) != (th, tw):
        img = cv2.copyMakeBorder(img, 0, th - nh, 0, tw - nw, cv2.BORDER_CONSTANT, value=tuple(fill))
    meta["content"] = (nh, nw)
    return img, meta


def norm_coefficients(mean, std):
    """(v / 255 - mean) / std as one multiply-add per channel: ``v * scale + bias``."""
    std = np.asarray(std, np.float32).reshape(3)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    bias = (-np.asarray(mean, np.float32).reshape(3) / std).astype(np.float32)
    return scale, bias


def normalize(img, scale, bias, layout="NCHW"):
    """uint8 H x W x 3 -> float32 1 x 3 x H x W (or 1 x H x W x 3). Channel by channel into one
    preallocated array: about 10x faster than the textbook three-pass expression on a 384x480
    image, which matters in the demo's frame loop."""
    h, w = img.shape[:2]
    if layout == "NHWC":
        x = np.empty((1, h, w, 3), np.float32)
        np.multiply(img, scale, out=x[0], casting="unsafe")
        x[0] += bias
        return x
    x = np.empty((1, 3, h, w), np.float32)
    for c in range(3):
        np.multiply(img[:, :, c], scale[c], out=x[0, c], casting="unsafe")
        x[0, c] += bias[c]
    return x


def quantize(x, quant, dtype):
    info = np.iinfo(np.dtype(dtype))
    q = np.round(x / float(quant["scale"])) + int(quant["zero_point"])
    return np.clip(q, info.min, info.max).astype(dtype)


def cast_input(x, dtype, quant=None):
    """Normalised float32 input -> the model's dtype (cast, or quantised with ``quant``)."""
    if dtype in INT_DTYPES:
        return quantize(x, quant, dtype)
    return x if dtype == "float32" else x.astype(dtype)


def input_maker(manifest):
    """``to_input(img)``: a uint8 image already at the model's size -> the model's input
    (normalised, laid out, cast or quantised), from the manifest alone; the coefficients are
    worked out once, not per frame."""
    inp = manifest["input"]
    scale, bias = norm_coefficients(manifest["mean"], manifest["std"])
    layout, dtype, quant = inp.get("layout", "NCHW"), inp.get("dtype", "float32"), inp.get("quant")

    def to_input(img):
        return cast_input(normalize(img, scale, bias, layout), dtype, quant)

    return to_input


def prepare(image, manifest, to_input):
    """uint8 RGB HxWx3 -> ``(model input, meta)``; ``to_input`` from :func:`input_maker`."""
    inp = manifest["input"]
    img, meta = fit_image(image, tuple(int(v) for v in inp["size"]), inp.get("fit", "pad"), inp["pad_rgb"])
    return to_input(img), meta


# -- the demo stream

def emit(out, header, payload=b""):
    """One record: 4-byte big-endian header length, the JSON header, then ``payload``."""
    import struct

    head = json.dumps(header).encode()
    out.write(struct.pack(">I", len(head)) + head + payload)
    out.flush()


def demo(call, manifest, opts, threads):
    """Frames from ``--source`` through the model, streamed to stdout; returns the exit code."""
    import zlib

    try:
        import cv2
    except ImportError as exc:
        print(json.dumps({"error": "missing", "module": "cv2", "message": str(exc).splitlines()[0]}), file=sys.stderr)
        return EXIT_MISSING
    out = sys.stdout.buffer
    source = opts["--source"]
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        emit(out, {"error": "source", "message": "OpenCV cannot open it (no such camera or file, or no codec)"})
        return EXIT_SOURCE
    frames, quality = int(opts.get("--frames", "0")), int(opts.get("--jpeg-quality", "90"))
    to_input = input_maker(manifest)
    n = 0
    try:
        while not frames or n < frames:
            ok, bgr = cap.read()
            if not ok:
                break
            t0 = time.perf_counter()
            x, meta = prepare(np.ascontiguousarray(bgr[:, :, ::-1]), manifest, to_input)
            t1 = time.perf_counter()
            call.set_input(x)
            call.run()
            t2 = time.perf_counter()
            cls = np.ascontiguousarray(_argmax(call.output(), manifest))
            t3 = time.perf_counter()
            jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            packed = zlib.compress(cls.tobytes(), 1)
            emit(out, {"index": n, "pre_ms": (t1 - t0) * 1e3, "model_ms": (t2 - t1) * 1e3,
                       "argmax_ms": (t3 - t2) * 1e3, "orig": meta["orig"], "content": meta["content"],
                       "classes": list(cls.shape), "jpeg": len(jpg), "packed": len(packed)}, jpg + packed)
            n += 1
    finally:
        cap.release()
    emit(out, {"end": True, "frames": n, "machine": _machine(threads),
               "runtime_versions": {**versions(), "numpy": np.__version__, "cv2": cv2.__version__}})  # noqa: F821
    return 0


def _stats(samples):
    a = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max()), "std": float(a.std()), "n": int(a.size)}


def _status_mb(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine(threads):
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": _cpu_model(), "arch": platform.machine(), "logical_cores": os.cpu_count(), "threads": threads,
            "load_average": load, "os": platform.platform(), "python": platform.python_version(),
            "hostname": platform.node()}


def _argmax(y, manifest):
    out = manifest.get("output") or {}
    y = np.asarray(y)
    if out.get("kind") == "classes":
        return np.squeeze(y).astype(np.uint8)
    y = y[0] if y.ndim == 4 else y
    axis = 2 if out.get("layout") == "NHWC" else 0
    return y.argmax(axis).astype(np.uint8)  # integer logits: the scale is positive, the argmax the same


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    opts = {"--runs": "100", "--warmup": "10", "--threads": "0"}
    for i in range(0, len(args) - 1, 2):
        opts[args[i]] = args[i + 1]
    runs, warmup, threads = int(opts["--runs"]), int(opts["--warmup"]), int(opts["--threads"]) or None
    folder = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    try:
        call = load(folder, manifest, threads)  # noqa: F821 - defined by the unit's plain.py below
        runtime_versions = versions()  # noqa: F821
    except ImportError as exc:
        # stdout carries the demo's binary stream: its errors go to stderr
        print(json.dumps({"error": "missing", "module": getattr(exc, "name", None) or str(exc),
                          "message": str(exc).splitlines()[0] if str(exc) else ""}),
              file=sys.stderr if "--source" in opts else sys.stdout)
        return EXIT_MISSING
    if "--source" in opts:
        return demo(call, manifest, opts, threads)
    inputs = np.load(os.path.join(folder, "inputs.npz"))
    baseline = _status_mb("VmRSS")
    # the images come as uint8 at the model's size (a quarter of float input): normalised here
    to_input = input_maker(manifest)
    call.set_input(to_input(inputs["latency"]))
    for _ in range(warmup):
        call.run()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call.run()
        samples.append((time.perf_counter() - t0) * 1e3)
    # the peak before the scored images are loaded: the runtime and the model, as a local bench measures it
    result = {"latency_ms": _stats(samples), "runs": runs, "warmup": warmup, "peak_memory_mb": _status_mb("VmHWM"),
              "method": getattr(call, "kind", "runtime call"), "samples_ms": [round(v, 4) for v in samples]}
    if "images" in inputs.files:
        maps = []
        for img in inputs["images"]:
            call.set_input(to_input(img))
            call.run()
            maps.append(_argmax(call.output(), manifest))
        np.savez_compressed(os.path.join(folder, "outputs.npz"), classes=np.stack(maps))
        result["images"] = len(maps)
    # what this process imported (top-level names): a local bench checks that torch is not among them
    result.update(baseline_mb=baseline, machine=_machine(threads),
                  runtime_versions={**runtime_versions, "numpy": np.__version__},
                  imported=sorted({m.split(".")[0] for m in sys.modules}))
    print(json.dumps(result))
    return 0
