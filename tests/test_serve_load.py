"""The server load generator: bounded in count and in time, loopback only."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("fastapi")

from ortpipe.benchmarks.serve_load import _load, format_report, free_port, server  # noqa: E402
from ortpipe.export.validate import PROBE_TEXTS  # noqa: E402


@pytest.fixture(scope="module")
def url(bert_bundle):
    port = free_port()
    command = [sys.executable, "-m", "ortpipe.runtime.cli", "serve", "--bundle", str(bert_bundle),
               "--port", str(port), "--threads", "1"]
    with server(command, port) as (address, _):
        yield address


def test_a_level_stops_after_its_request_count(url):
    result = asyncio.run(_load(url, list(PROBE_TEXTS), concurrency=4, requests=20, seconds=60))
    assert result["requests"] == 20 and result["errors"] == 0 and result["concurrency"] == 4
    assert result["sentences_per_s"] > 0 and result["p99_ms"] >= result["p50_ms"] > 0


def test_a_level_stops_after_its_time(url):
    started = time.monotonic()
    result = asyncio.run(_load(url, list(PROBE_TEXTS), concurrency=2, requests=10**9, seconds=0.5))
    assert time.monotonic() - started < 20 and 0 < result["requests"] < 10**9


def test_report_names_the_machine_and_the_yardsticks():
    level = {"p50_ms": 1.0, "p99_ms": 2.0, "sentences_per_s": 100.0, "errors": 0}
    report = {"machine": {"cpu": "CPU", "cpu_id": "", "arch": "x86_64", "isa": ["avx2"], "cores": 2},
              "threads": 2, "data": "test.tsv (872)", "servers": {"ortpipe-serve": {"1": level}},
              "in_process": {"variant": "int8", "single_p50_ms": 0.8, "sorted_batch32_sentences_per_s": 600.0}}
    text = format_report(report)
    assert "| ortpipe-serve | 1 | 1.00 | 2.00 | 100 | 0 |" in text and "x86_64: avx2" in text and "600" in text
