"""Which artifact the demo runs: ``--artifact DIR``, or a model built once into a cache.

Without ``--artifact`` the demo builds ``--model`` (a checkpoint or a zoo name; default
the zoo's best model) for ``--target`` (default the fastest CPU target here:
``openvino-cpu`` when OpenVINO imports, else ``onnxruntime-cpu``) into
``$EDGESEG_CACHE/artifacts/<model>-<target>-<precision>`` (``EDGESEG_CACHE`` defaults to
``$XDG_CACHE_HOME/edgeseg``, i.e. ``~/.cache/edgeseg``) and reuses it next time; a
checkpoint file that changed since (another sha256) is rebuilt.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgeseg.errors import ModelError
from edgeseg.files import cache_dir


def default_target() -> str:
    """The fastest CPU target whose runtime imports here."""
    return "openvino-cpu" if importlib.util.find_spec("openvino") is not None else "onnxruntime-cpu"


def resolve_artifact(artifact=None, model=None, target=None, precision=None, *, log=None) -> Path:
    """The artifact folder to run (built into the cache when needed)."""
    from edgeseg.formats.predictor import read_manifest

    say = log or (lambda msg: None)
    if artifact is not None:
        if model is not None or target is not None:
            raise ModelError("give either --artifact DIR or --model/--target, not both")
        read_manifest(artifact)  # a clear error when it is not an artifact folder
        return Path(artifact)
    if model is None:
        from edgeseg.targets import default_model

        try:
            model = default_model(target or default_target())
        except ModelError:
            raise ModelError("the model zoo is empty in this edgeseg: give --artifact DIR (from `edgeseg build`) "
                             "or --model CHECKPOINT.pt") from None
        say(f"model: zoo model '{model}' (default)")
    from edgeseg.targets import load_target

    profile = load_target(target or default_target())
    precision = profile.check_precision(precision)
    path = Path(str(model)).expanduser()
    stem = path.stem if path.suffix == ".pt" or path.is_file() else str(model)
    out = cache_dir() / "artifacts" / f"{stem}-{profile.name}-{precision}"
    sha = None
    if path.is_file():
        from edgeseg.files import file_sha256

        sha = file_sha256(path)
    if (out / "manifest.json").is_file():
        try:
            m = read_manifest(out)
            if sha is None or (m.get("source") or {}).get("sha256") in (None, sha):
                say(f"artifact: {out} (cached)")
                return out
            say(f"artifact: {out} is for an older '{path}': rebuilding")
        except Exception:  # noqa: BLE001 - a broken cache entry is rebuilt
            say(f"artifact: {out} is broken: rebuilding")
    from edgeseg.build import build
    from edgeseg.formats.base import BuildError

    say(f"building {model} for {profile.name} ({precision}) into {out} (once; reused next time)")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        return build(str(model), profile.name, precision=precision, out=out, force=True)
    except BuildError as exc:
        # build's advice names build's flags; say how to get there from the demo
        raise BuildError(f"{exc}. The demo has no --allow-drop: build the artifact yourself "
                         f"(`edgeseg build {model} --target {profile.name} --precision {precision} --out DIR`, "
                         f"with any flag above) and run `edgeseg demo --artifact DIR`") from exc


__all__ = ["cache_dir", "default_target", "resolve_artifact"]
