"""The workloads, each measured identically on every path.

- latency: one short sentence end to end, p50/p95/p99 over many repetitions.
- throughput: SST-2 test sentences, batch size 32, file order (and ortpipe's
  own length-sorted batching).
- long: 8 texts of about 512 tokens.
- overhead: for ortpipe paths, end to end minus the ONNX Runtime ``run`` call.
- cold start and peak RSS: see :mod:`ortpipe.benchmarks.coldstart`.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import numpy as np

from ortpipe.runtime.timing import time_calls

SHORT_SENTENCE = "This course is amazing!"
LONG_PARAGRAPH = (
    "The film opens with a long, patient shot of a harbour at dawn, and for the first twenty minutes it "
    "seems content simply to watch: fishermen mending nets, a girl cycling along the sea wall, gulls "
    "arguing over scraps. Some viewers will find this maddening; I found it hypnotic. When the story "
    "finally arrives, it arrives quietly, a letter that should never have been opened and a family that "
    "has spent decades not talking about what it says. The performances are uniformly excellent, the "
    "score is spare and the cinematography is gorgeous without ever showing off. "
)


def long_texts(count: int = 8, words: int = 420) -> list[str]:
    """``count`` distinct texts of about 512 word-piece tokens each."""
    base = LONG_PARAGRAPH.split()
    return [" ".join((base * 6)[i * 7:i * 7 + words]) for i in range(count)]


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds."""
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "runs": len(ms)}


def latency(one: Callable[[str], str], repeats: int) -> dict:
    """Single-sentence end-to-end latency."""
    return percentiles(time_calls(lambda: one(SHORT_SENTENCE), repeats))


def throughput(many: Callable[[list[str], int], list[str]], texts: list[str], batch_size: int = 32,
               rounds: int = 1) -> tuple[dict, list[str]]:
    """Sentences per second over ``texts`` (best of ``rounds``), and the labels of the last round."""
    many(texts[:batch_size], batch_size)  # warm-up
    best, labels = float("inf"), []
    for _ in range(rounds):
        start = time.perf_counter()
        labels = many(texts, batch_size)
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "texts_per_s": len(texts) / best, "texts": len(texts), "batch_size": batch_size}, labels


def long_inputs(many: Callable[[list[str], int], list[str]], repeats: int = 3) -> dict:
    """Time to classify 8 texts of ~512 tokens in one batch (median of ``repeats``)."""
    texts = long_texts()
    times = time_calls(lambda: many(texts, len(texts)), repeats, warmup=1)
    return {"median_ms": statistics.median(times) * 1000.0, "texts": len(texts)}


def ortpipe_overhead(clf, repeats: int) -> dict:
    """ortpipe's own cost per single-sentence call: end to end minus ``session.run``.

    The two calls alternate in one loop and the overhead is the median of the
    paired differences, so drift in machine load cancels out.
    """
    encoded = clf.tokenize([SHORT_SENTENCE])
    if clf.backend == "onnxruntime":
        feed, output = clf.model.feed(encoded), clf.model.session.get_outputs()[0].name
        engine = lambda: clf.model.session.run([output], feed)  # noqa: E731
    else:  # OpenVINO: its own call
        engine = lambda: clf.model(encoded)  # noqa: E731
    run_only, end_to_end = [], []
    for _ in range(5):
        clf(SHORT_SENTENCE)
    for _ in range(repeats):
        start = time.perf_counter()
        engine()
        middle = time.perf_counter()
        clf(SHORT_SENTENCE)
        end = time.perf_counter()
        run_only.append(middle - start)
        end_to_end.append(end - middle)
    tokenize = percentiles(time_calls(lambda: clf.tokenize([SHORT_SENTENCE]), repeats))
    differences = [e - r for e, r in zip(end_to_end, run_only)]
    return {"end_to_end_p50_ms": percentiles(end_to_end)["p50_ms"],
            "session_run_p50_ms": percentiles(run_only)["p50_ms"],
            "tokenize_p50_ms": tokenize["p50_ms"],
            "overhead_p50_ms": float(np.median(differences)) * 1000.0}


def accuracy(predicted: Sequence[str], gold: Sequence[int], labels: Sequence[str]) -> float:
    return sum(labels[g] == p for p, g in zip(predicted, gold)) / len(gold)


def agreement(predicted: Sequence[str], reference: Sequence[str]) -> float:
    return sum(a == b for a, b in zip(predicted, reference)) / len(reference)
