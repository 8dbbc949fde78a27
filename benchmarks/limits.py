"""The machine's measured limits, and how close each path comes to them.

A figure in ms says little on another CPU; a figure as a share of what this
CPU can do travels. :func:`measure_limits` times one large fp32 MatMul and
one large u8×s8 MatMulInteger through ONNX Runtime on the benchmark's threads
(the kernels a transformer spends its time in). :func:`model_flops` counts
the useful work of classifying a text: every matmul of the encoder on its
real tokens, attention scores and context included, padding excluded.
"""

from __future__ import annotations

import time
from typing import Iterable

import numpy as np

GEMM_SIZE = 1024  # M = N = K: 2.1 GFLOP per call, large enough to reach the kernel's peak


def _session(model, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def _matmul_model(integer: bool, size: int):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:  # 7-bit weights, as the portable int8 variant stores them
        weights = rng.integers(-64, 64, (size, size), dtype=np.int8)
        a_type, y_type, op = TensorProto.UINT8, TensorProto.INT32, "MatMulInteger"
    else:
        weights = rng.standard_normal((size, size), dtype=np.float32)
        a_type, y_type, op = TensorProto.FLOAT, TensorProto.FLOAT, "MatMul"
    graph = helper.make_graph([helper.make_node(op, ["a", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", a_type, [size, size])],
                              [helper.make_tensor_value_info("y", y_type, [size, size])],
                              [numpy_helper.from_array(weights, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _ops_per_second(integer: bool, threads: int, size: int, seconds: float) -> float:
    session = _session(_matmul_model(integer, size), threads)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (size, size), dtype=np.uint8) if integer else rng.standard_normal((size, size),
                                                                                                 dtype=np.float32)
    session.run(None, {"a": a})
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, {"a": a})
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def measure_limits(threads: int, size: int = GEMM_SIZE, seconds: float = 1.0) -> dict:
    """Best fp32 GEMM GFLOP/s and int8 GEMM GOP/s over ``seconds`` each, through ONNX Runtime."""
    return {"fp32_gflops": _ops_per_second(False, threads, size, seconds) / 1e9,
            "int8_gops": _ops_per_second(True, threads, size, seconds) / 1e9,
            "threads": threads, "gemm": f"{size}×{size}×{size}"}


def model_flops(architecture: dict, tokens: int) -> float:
    """Multiply-adds ×2 to classify one text of ``tokens`` real tokens.

    Per layer: Q, K, V and output projections (4·n·h²), the feed-forward
    (2·n·h·i), attention scores and context (2·n²·h); then pooler and head.
    """
    n, h = tokens, architecture["hidden_size"]
    per_layer = 4 * n * h * h + 2 * n * h * architecture["intermediate_size"] + 2 * n * n * h
    head = h * h + h * architecture.get("num_labels", 2)
    return 2.0 * (architecture["layers"] * per_layer + head)


def useful_flops(architecture: dict, token_counts: Iterable[int]) -> float:
    return sum(model_flops(architecture, n) for n in token_counts)


def efficiency(flops: float, seconds: float, limit_per_s: float) -> dict:
    """Achieved G(FL)OP/s and its share of the limit, in percent."""
    achieved = flops / seconds / 1e9
    return {"gflops": achieved, "percent_of_limit": 100.0 * achieved / limit_per_s}
