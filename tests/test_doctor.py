"""``edgeseg doctor`` and the CPU ISA it reports: runs to the end on this machine (exit 0,
valid JSON), says for every shipped target whether it builds and runs here, and reports a
runtime that fails to load instead of raising."""

from __future__ import annotations

import json

from edgeseg.cli.main import main
from edgeseg.machine import cpu_flags, cpu_isa
from edgeseg.targets import list_targets, load_target, precision_available, runtime_available


def test_cpu_isa_levels():
    amx = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
    assert cpu_isa(amx) == {"isa": "AMX", "bf16": True, "int8_dot": True,
                            "flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                                      "amx_int8"]}
    epyc = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}  # e.g. AMD Zen 4: bf16 without AMX
    assert cpu_isa(epyc)["isa"] == "AVX-512 VNNI" and cpu_isa(epyc)["bf16"]
    assert cpu_isa({"avx2", "avx512f"}) == {"isa": "AVX-512", "bf16": False, "int8_dot": False,
                                            "flags": ["avx2", "avx512f"]}
    assert cpu_isa({"avx2", "avx_vnni"})["isa"] == "AVX2 VNNI"
    assert cpu_isa({"avx2", "fma"})["isa"] == "AVX2"
    assert not cpu_isa(set())["bf16"]


def test_doctor_json_matches_this_machine(capsys):
    assert main(["doctor", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["versions"]["python"] and r["versions"]["torch"]
    assert r["machine"] | cpu_isa(cpu_flags()) == r["machine"]  # the ISA is read off /proc/cpuinfo
    assert [t["target"] for t in r["targets"]] == list_targets()
    for t in r["targets"]:
        profile = load_target(t["target"])
        assert t["run"] == runtime_available(profile)[0]
        if t["run"]:
            assert t["precisions_here"] == [p for p in profile.precisions if precision_available(profile, p)[0]]
        else:
            assert t["precisions_here"] == [] and t["why_not_run"]
    ort = r["devices"]["onnxruntime"]
    assert "CPUExecutionProvider" in ort["providers"]


def test_doctor_text_names_every_target(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in list_targets():
        assert f"  {name} " in out
    assert "isa " in out and "bf16" in out


def test_doctor_reports_a_broken_runtime_and_still_exits_0(monkeypatch, capsys):
    import openvino

    def broken(*a, **k):
        raise RuntimeError("plugin libopenvino_intel_cpu_plugin.so cannot be loaded\nmore detail")

    monkeypatch.setattr(openvino, "Core", broken)
    assert main(["doctor", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    err = r["devices"]["openvino"]["error"]
    assert err.startswith("RuntimeError: plugin libopenvino_intel_cpu_plugin.so cannot be loaded") and "\n" not in err


# -- precisions that run here but slower than fp32 (issue 34): a measured probe, cached

KINDS = {  # CPU flags, whether OpenVINO lists BF16, and the probe's bf16 / f32 ratio on such a CPU
    "amx": ({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}, True, 0.6),
    "avx512-bf16": ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, True, 1.3),
    "none": ({"avx2", "fma"}, False, None),
}


def as_cpu(monkeypatch, tmp_path, kind: str, ran_as: str = "bf16") -> list:
    """This machine seen as a CPU of ``kind``; the probe's measurements replaced. Returns the calls."""
    import edgeseg.formats.openvino.probe as probe
    import edgeseg.formats.openvino.runtime as ov_runtime
    import edgeseg.machine as machine

    flags, bf16, ratio = KINDS[kind]
    calls = []

    def measure(hint, **kw):
        calls.append(hint)
        return {"hint": hint, "ran_as": ran_as, "ms": 10.0 * ratio, "fp32_ms": 10.0, "ratio": ratio}

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(machine, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr(ov_runtime, "cpu_supports_bf16", lambda core=None: bf16)
    monkeypatch.setattr(probe, "measure", measure)
    return calls


def test_bf16_is_called_slower_only_where_it_runs_and_measured_slower(monkeypatch, tmp_path):
    from edgeseg.doctor import precision_warning, slower_than_fp32

    ov = load_target("openvino-cpu")
    for kind, expect in (("amx", set()), ("none", set()), ("avx512-bf16", {"bf16"})):
        calls = as_cpu(monkeypatch, tmp_path, kind)
        assert set(slower_than_fp32(ov)) == expect, kind
        assert calls == ([] if kind == "none" else ["bf16"]), kind  # no bf16: nothing to measure
        warning = precision_warning("openvino-cpu", "bf16")
        assert (warning is not None) == bool(expect), kind
    assert "1.30x slower than fp32" in warning and "prefer fp32 or int8" in warning
    assert precision_warning("openvino-cpu", "fp32") is None and precision_warning("onnxruntime-cpu", "int8") is None


def test_a_hint_the_runtime_ignores_is_not_called_slower(monkeypatch, tmp_path):
    from edgeseg.doctor import slower_than_fp32

    as_cpu(monkeypatch, tmp_path, "avx512-bf16", ran_as="f32")  # compiled as f32 despite the bf16 hint
    assert slower_than_fp32(load_target("openvino-cpu")) == {}


def test_the_probe_is_cached_per_cpu(monkeypatch, tmp_path):
    from edgeseg.doctor import precision_speed

    ov = load_target("openvino-cpu")
    calls = as_cpu(monkeypatch, tmp_path, "avx512-bf16")
    first = precision_speed(ov, "bf16")
    assert precision_speed(ov, "bf16") == first and calls == ["bf16"]
    assert len(list((tmp_path / "cache" / "probes").glob("*.json"))) == 1
    calls = as_cpu(monkeypatch, tmp_path, "amx")  # another CPU: measured again
    assert precision_speed(ov, "bf16")["ratio"] == 0.6 and calls == ["bf16"]


def test_doctor_targets_and_build_say_so(monkeypatch, tmp_path, capsys):
    as_cpu(monkeypatch, tmp_path, "avx512-bf16")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "bf16 runs here, but measured slower than fp32: openvino-cpu 1.30x" in out
    assert "bf16 runs on this CPU but measured 1.30x slower than fp32" in out
    assert main(["targets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["openvino-cpu"]["slower than fp32 here"] == "bf16 (1.30x)"
    assert rows["onnxruntime-cpu"]["slower than fp32 here"] == "-"
    # the warning comes before the build starts (this one then stops: no such checkpoint)
    assert main(["build", str(tmp_path / "none.pt"), "--target", "openvino-cpu", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("warning: bf16 runs on this CPU but measured 1.30x slower than fp32")


def test_one_real_probe(monkeypatch, tmp_path):
    """The probe network really runs in f32 and in the bf16 hint here, and is cached."""
    from edgeseg.doctor import precision_speed
    from edgeseg.formats.openvino.runtime import cpu_supports_bf16

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    p = precision_speed(load_target("openvino-cpu"), "bf16")
    assert p["ms"] > 0 and p["fp32_ms"] > 0 and abs(p["ratio"] - p["ms"] / p["fp32_ms"]) < 1e-9
    assert p["ran_as"] == ("bf16" if cpu_supports_bf16() else "f32")  # a CPU without bf16 runs the hint in f32
    assert precision_speed(load_target("openvino-cpu"), "bf16") == p  # from the cache
    assert precision_speed(load_target("openvino-cpu"), "fp16") is None  # computes in f32: nothing to compare
