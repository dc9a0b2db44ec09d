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
