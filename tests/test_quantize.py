"""int8 settings: the portable default stores 7-bit weights, so no x86 kernel can saturate."""

from __future__ import annotations

import numpy as np
import pytest

from ortpipe.export.quantize import CANDIDATES, PORTABLE, QuantSettings, quantize_int8
from ortpipe.runtime.manifest import read_manifest

INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "MatMulIntegerToFloat")


def _int8_weight_range(path) -> tuple[int, int]:
    """The smallest and largest int8 weight fed to an integer matmul of the graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    weights = [initializers[name] for node in graph.node if node.op_type in INTEGER_OPS
               for name in node.input if name in initializers and initializers[name].dtype == np.int8]
    assert weights, "no int8 weights found in the quantized graph"
    return min(int(w.min()) for w in weights), max(int(w.max()) for w in weights)


def test_the_exported_int8_uses_the_portable_settings(bert_bundle):
    details = read_manifest(bert_bundle).variants["int8"].details
    assert details["reduce_range"] is True and details["per_channel"] is True and details["method"] == "dynamic"
    low, high = _int8_weight_range(bert_bundle / "model.int8.onnx")
    # |w| ≤ 64, so 2 × 255 × 64 = 32,640 ≤ 32,767: a pair of u8×s8 products fits the AVX2 kernel's 16 bits
    assert max(-low, high) <= 64 and 2 * 255 * max(-low, high) <= 32767


def test_full_range_weights_would_overflow_a_16_bit_pair(bert_bundle, tmp_path):
    """The same graph quantized with 8-bit weights reaches ±127: what saturates on CPUs without VNNI."""
    target = tmp_path / "int8-8bit.onnx"
    quantize_int8(bert_bundle / "model.optimized.onnx", target, QuantSettings("s8-8bit", reduce_range=False))
    low, high = _int8_weight_range(target)
    assert max(-low, high) > 64 and 2 * 255 * max(-low, high) > 32767


def test_static_settings_need_calibration_data(bert_bundle, tmp_path):
    from ortpipe.export.onnx_export import ExportError

    static = next(s for s in CANDIDATES if s.method == "static")
    with pytest.raises(ExportError, match="needs calibration data"):
        quantize_int8(bert_bundle / "model.onnx", tmp_path / "s.onnx", static)


def test_the_portable_setting_is_among_the_measured_candidates():
    assert PORTABLE in CANDIDATES and PORTABLE.reduce_range
    assert len({s.name for s in CANDIDATES}) == len(CANDIDATES)
