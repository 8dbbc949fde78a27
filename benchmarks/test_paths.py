"""pytest-benchmark suite: every path on the same workloads.

    pytest benchmarks/ --benchmark-save=base
    pytest benchmarks/ --benchmark-compare

Runs on the default bundle (or ``$ORTPIPE_BENCH_BUNDLE``) with
``$ORTPIPE_BENCH_THREADS`` threads (default: all cores) for every path.
"""

from __future__ import annotations

import pytest

from ortpipe.benchmarks.workloads import SHORT_SENTENCE, long_texts


def _record(benchmark, classifier_path) -> None:
    benchmark.extra_info.update(path=classifier_path.name, provider=classifier_path.provider)


def test_latency_single_sentence(benchmark, classifier_path):
    benchmark.group = "latency: one short sentence"
    _record(benchmark, classifier_path)
    label = benchmark(classifier_path.one, SHORT_SENTENCE)
    assert isinstance(label, str)


def test_throughput_sst2_file_order(benchmark, classifier_path, sst2_sentences):
    benchmark.group = "throughput: SST-2 test, batch 32, file order"
    _record(benchmark, classifier_path)
    labels = benchmark.pedantic(classifier_path.many, args=(sst2_sentences, 32), rounds=3, warmup_rounds=1)
    assert len(labels) == len(sst2_sentences)


def test_throughput_sst2_length_sorted(benchmark, classifier_path, sst2_sentences):
    if classifier_path.sorted_many is None:
        pytest.skip(f"{classifier_path.name} has no length-sorted batching of its own")
    benchmark.group = "throughput: SST-2 test, batch 32, ortpipe's length-sorted batching"
    _record(benchmark, classifier_path)
    labels = benchmark.pedantic(classifier_path.sorted_many, args=(sst2_sentences, 32), rounds=3,
                                warmup_rounds=1)
    assert len(labels) == len(sst2_sentences)


def test_long_texts(benchmark, classifier_path):
    benchmark.group = "long: 8 texts of ~512 tokens"
    _record(benchmark, classifier_path)
    texts = long_texts()
    labels = benchmark.pedantic(classifier_path.many, args=(texts, len(texts)), rounds=3, warmup_rounds=1)
    assert len(labels) == len(texts)
