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
