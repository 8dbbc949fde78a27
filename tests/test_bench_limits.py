"""Machine limits and useful work: the figures that let a speed travel between CPUs."""

from __future__ import annotations

import pytest

from ortpipe.benchmarks.limits import efficiency, measure_limits, model_flops, useful_flops

MINILM = {"layers": 6, "hidden_size": 384, "heads": 12, "intermediate_size": 1536, "num_labels": 2}


def test_limits_are_measured_through_onnx_runtime():
    limits = measure_limits(threads=1, size=128, seconds=0.05)
    assert limits["fp32_gflops"] > 0 and limits["int8_gops"] > 0
    assert limits["threads"] == 1 and limits["gemm"] == "128×128×128"


def test_model_flops_counts_every_matmul_and_attention():
    n, h, i, layers = 7, 384, 1536, 6
    projections = 4 * n * h * h  # query, key, value, attention output
    feed_forward = 2 * n * h * i
    attention = 2 * n * n * h  # scores and context
    head = h * h + h * 2  # pooler and classifier
    assert model_flops(MINILM, n) == 2 * (layers * (projections + feed_forward + attention) + head)


def test_attention_makes_long_texts_cost_more_than_linearly():
    assert model_flops(MINILM, 512) > 64 * model_flops(MINILM, 8)


def test_padding_is_not_useful_work():
    assert useful_flops(MINILM, [5, 30]) == model_flops(MINILM, 5) + model_flops(MINILM, 30)


def test_efficiency_is_a_share_of_the_limit():
    result = efficiency(flops=50e9, seconds=1.0, limit_per_s=200.0)
    assert result == {"gflops": pytest.approx(50.0), "percent_of_limit": pytest.approx(25.0)}
