"""The machine description: ISA parsing, the int8 kernel probe, the cache key."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from ortpipe.runtime import machine
from ortpipe.runtime.machine import describe_machine, isa_summary, machine_key, parse_cpuinfo

ZEN1 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC 7551P 32-Core Processor
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni

processor\t: 1
model name\t: ignored second core
"""
SAPPHIRE_RAPIDS = ("model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: avx avx2 fma avx512f avx512bw avx512vl "
                   "avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n")
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve i8mm bf16 asimdhp\nCPU implementer\t: 0x41\n"


def test_avx2_only_cpu_has_no_avx512_and_no_vnni():
    cpu = parse_cpuinfo(ZEN1, "x86_64")
    assert cpu["cpu"] == "AMD EPYC 7551P 32-Core Processor"
    assert cpu["isa"] == ["avx", "avx2", "fma", "f16c"]
    assert cpu["cpu_id"] == "cpu family 23, model 1"


def test_x86_features_that_matter_to_onnx_runtime():
    isa = parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64")["isa"]
    for feature in ("avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile"):
        assert feature in isa


def test_arm64_features_use_the_common_names():
    isa = parse_cpuinfo(GRAVITON3, "aarch64")["isa"]
    assert {"asimd", "dotprod", "i8mm", "sve", "bf16"} <= set(isa) and "asimddp" not in isa


def test_summary_says_when_the_int8_kernel_saturates():
    zen1 = {**parse_cpuinfo(ZEN1, "x86_64"), "arch": "x86_64"}
    assert isa_summary({**zen1, "int8_u8s8_saturates": True}).endswith("u8×s8 int8 kernel saturates here")
    assert "saturates" not in isa_summary({**zen1, "int8_u8s8_saturates": False})


def test_describe_machine_has_what_a_figure_needs():
    info = describe_machine()
    for key in ("cpu", "arch", "isa", "cores", "onnxruntime", "providers", "int8_u8s8_saturates"):
        assert key in info
    assert isinstance(info["isa"], list) and "CPUExecutionProvider" in info["providers"]
    assert info["arch"] in isa_summary(info)


def test_embedded_kernel_probe_is_the_documented_graph():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "u8s8",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])],
        [numpy_helper.from_array(np.full((64, 1), 127, np.int8), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7,
                              producer_name="ortpipe")
    assert model.SerializeToString() == machine._U8S8_PROBE
    onnx.checker.check_model(onnx.load_from_string(machine._U8S8_PROBE))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the u8×s8 saturation is an x86 matter")
def test_kernel_probe_matches_the_cpu_flags():
    """ONNX Runtime's u8×s8 kernel is exact with AVX-512 VNNI and saturates without any VNNI."""
    isa = set(describe_machine()["isa"])
    if "avx512_vnni" in isa:
        assert machine.int8_kernel_saturates() is False
    elif not isa & {"avx_vnni", "amx_int8"}:
        assert machine.int8_kernel_saturates() is True
    else:  # AVX-VNNI without AVX-512: which kernel ONNX Runtime picks is its business; the probe still answers
        assert isinstance(machine.int8_kernel_saturates(), bool)


def test_machine_key_changes_with_what_changes_the_numbers():
    info = describe_machine()
    key = machine_key(info)
    assert key == machine_key(dict(info)) and len(key) == 16
    assert machine_key({**info, "int8_u8s8_saturates": not info["int8_u8s8_saturates"]}) != key
    assert machine_key({**info, "isa": info["isa"] + ["amx_int8"]}) != key
    assert machine_key({**info, "onnxruntime": "0.0.0"}) != key
    assert machine_key(info, provider="cuda") != key
    assert machine_key({**info, "cores": 96}) == key  # the core count does not change a result
