"""ncnn: Tencent's inference library for ARM and x86 CPUs (Raspberry Pi, a Jetson's CPU,
Android phones). The artifact is ncnn's own pair of files, ``model.ncnn.param`` (the
graph, text) and ``model.ncnn.bin`` (the weights), converted by pnnx from the static ONNX
file; the weights are fp32, or fp16 (half the size; ncnn computes in fp16 where the CPU
has fp16 arithmetic, ARMv8.2 and newer, and in fp32 elsewhere). Export: :mod:`.export`;
runtime: :mod:`.runtime`.
"""

from edgeseg.formats.base import Unit


class NcnnUnit(Unit):
    name = "ncnn"
    formats = ("ncnn",)
    runtime_modules = ("ncnn",)
    build_modules = ("pnnx", "onnx")
    extra = "ncnn"
    distributions = ("ncnn", "pnnx")
    quantized_checkpoints = ()  # no int8 here: ncnn's int8 needs its own calibration table tools
    compress_presets = {}


UNIT = NcnnUnit()
