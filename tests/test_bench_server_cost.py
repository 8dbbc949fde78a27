"""The server-cost benchmark's parts that need no server: CPU from /proc, and grouping py-spy's stacks."""

from __future__ import annotations

import os
import sys
import time

import pytest

from ortpipe.benchmarks.server_profile import grouped

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_process_cpu_counts_this_process_work():
    from ortpipe.benchmarks.server_cost import process_cpu_s

    before, started = process_cpu_s(os.getpid()), time.process_time()
    while time.process_time() - started < 0.3:
        sum(range(10_000))
    assert process_cpu_s(os.getpid()) - before >= 0.2


def test_one_threads_cpu_is_its_own_and_not_the_others():
    import threading

    from ortpipe.benchmarks.server_cost import process_cpu_s

    def spin(seconds: float) -> None:
        started = time.thread_time()
        while time.thread_time() - started < seconds:
            sum(range(10_000))

    before_main, before_all = process_cpu_s(os.getpid(), os.getpid()), process_cpu_s(os.getpid())
    worker = threading.Thread(target=spin, args=(0.4,))
    worker.start()
    worker.join()
    main_spent = process_cpu_s(os.getpid(), os.getpid()) - before_main
    all_spent = process_cpu_s(os.getpid()) - before_all
    assert all_spent >= 0.3 and main_spent < 0.15  # the worker's CPU counts for the process, not the main thread


def test_the_hosts_share_is_read_from_proc_stat_and_stays_a_share():
    from ortpipe.benchmarks.server_cost import host_ticks, taken_pct

    before = host_ticks()
    started = time.process_time()
    while time.process_time() - started < 0.1:
        sum(range(10_000))
    after = host_ticks()
    assert after[1] > before[1] and 0 <= after[0] - before[0] <= after[1] - before[1]
    assert 0.0 <= taken_pct(before, after) <= 100.0
    assert taken_pct((10, 100), (40, 200)) == 30.0 and taken_pct((5, 50), (5, 50)) == 0.0


def test_stacks_are_grouped_innermost_first_and_waiting_threads_dropped():
    raw = "\n".join([
        "thread (1): MainThread;run (uvloop);answer (serve/app.py:90);TextTokenizer.encode (runtime/tokenize.py:156) 30",
        "thread (2): infer;Session.run (onnxruntime/capi/x.py:406);MlasGemmU8S8 (libonnxruntime.so) 50",
        "thread (3): worker;_worker (concurrent/futures/thread.py:81);_queue_SimpleQueue_get (q.c:1);0x1 (libc) 900",
        "thread (1): MainThread;run (uvloop);RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:522) 20",
    ])
    report = grouped(raw)
    assert report["samples"] == 100  # the waiting thread's 900 samples are not CPU
    assert report["groups"] == {"ONNX Runtime compute": 0.5, "tokenizing": 0.3, "HTTP protocol: parsing and writing": 0.2}


def test_the_benchmark_measures_a_real_server_and_sums_it_up(bert_bundle):
    """``measure`` against a real ``ortpipe serve`` of the tiny bundle; ``summary`` is what ``ortpipe bench
    --server`` prints."""
    from ortpipe.benchmarks.server_cost import measure, summary

    texts = [f"sentence number {i} of the benchmark, {'with more words ' * (i % 4)}" for i in range(128)]
    report = measure(str(bert_bundle), texts, threads=2, flags=[], idle_s=0.5)
    run = report["rounds"]["this checkout"][0]
    for level in ("one_client", "clients_64"):
        # (/proc counts in 10 ms ticks: the event loop's share may round to the whole)
        assert 0 < run[level]["event_loop_ms_per_sentence"] <= run[level]["cpu_ms_per_sentence"]
    ratio = report["this checkout"][0]
    before, after = report["rounds"]["in-process"]  # the round's yardstick: the runs just before and after it
    assert ratio["ratio_64_clients"] == run["clients_64"]["cpu_ms_per_sentence"] / (
        (before["batch32_cpu_ms"] + after["batch32_cpu_ms"]) / 2)
    assert before["p50_spaced_ms"] > 0 and ratio["p50_gap_spaced_ms"] == run["one_client"]["p50_ms"] - (
        (before["p50_spaced_ms"] + after["p50_spaced_ms"]) / 2)
    table = summary(report)
    assert f"{ratio['p50_gap_ms']:+.2f} ms ({ratio['p50_gap_spaced_ms']:+.2f})" in table
    assert f"({ratio['ratio_one_client']:.2f}×)" in table and f"({ratio['ratio_64_clients']:.2f}×)" in table
    assert "idle server with two models" in table and "| this checkout, median |" in table
    assert f"| {run['one_client']['host_took_pct']:.0f} / {run['clients_64']['host_took_pct']:.0f} % |" in table


def test_servers_side_by_side_are_compared_burst_by_burst(bert_bundle):
    """``server_ab.compare`` against two real servers of the tiny bundle, the second with other flags."""
    from ortpipe.benchmarks.server_ab import compare

    texts = [f"text {i}: {'a few more words ' * (i % 5)}" for i in range(96)]
    report = compare(["one|ORTPIPE_MAX_WAIT_MS=2|", "two||--concurrent-batches 2"], str(bert_bundle), texts,
                     clients=8, bursts=2)
    assert list(report) == ["one", "two"] and report["one"]["ratio_to_first"] == 1.0
    for row in report.values():
        assert row["cpu_ms_per_sentence"] > 0 and row["p50_ms"] > 0
        assert row["ratio_range"][0] <= row["ratio_to_first"] <= row["ratio_range"][1]
        assert 0.0 <= row["host_took_pct"] <= 100.0
