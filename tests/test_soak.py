"""The soak benchmark's bookkeeping: what counts as growth, and the call mix it feeds."""

from __future__ import annotations

import numpy as np

from ortpipe.benchmarks.soak import LONG_SHARE, MAX_TEXTS, MixedCalls, plot, summarize


def _samples(rss) -> list[tuple[float, float]]:
    return [(float(t), float(m)) for t, m in enumerate(rss)]


def test_a_leak_is_growth_and_a_spike_is_not():
    steady = [200.0] * 600
    spiky = list(steady)
    spiky[450] = spiky[590] = 420.0  # two long batches, given back at once
    leaking = list(np.linspace(200, 260, 600))
    assert summarize(_samples(steady), 120)["growth_last_half_mb"] == 0
    report = summarize(_samples(spiky), 120)
    assert report["growth_last_half_mb"] == 0 and report["rss_peak_mb"] == 420 and report["steady_rss_mb"] == 200
    assert summarize(_samples(leaking), 120)["growth_last_half_mb"] > 25


def test_the_call_mix_is_mostly_short_batches_and_a_few_long_texts():
    texts = [f"sentence number {i} of a review" for i in range(500)]
    calls = MixedCalls(texts, seed=3)
    batches = [calls.next() for _ in range(2000)]
    long = [b for b in batches if len(b[0]) > 1000]
    assert abs(len(long) / len(batches) - LONG_SHARE) < 0.02
    assert {len(b) for b in long} == {1, 8}
    assert max(len(b) for b in batches) == MAX_TEXTS and min(len(b) for b in batches) == 1
    again = MixedCalls(texts, seed=3)
    assert [again.next() for _ in range(50)] == batches[:50]


def test_the_plot_is_written(tmp_path):
    plot({"lean": {"rss_mb": _samples([120, 200, 210])}}, tmp_path / "rss.png", "a machine")
    assert (tmp_path / "rss.png").stat().st_size > 1000
