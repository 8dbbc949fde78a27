"""The server load generator: bounded in count and in time, loopback only."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest

pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("fastapi")

from ortpipe.benchmarks.serve_load import (RawHttpClient, _load, format_report, free_port,  # noqa: E402
                                           paired_concurrency_1, paired_throughput, server)
from ortpipe.export.validate import PROBE_TEXTS  # noqa: E402
from ortpipe.runtime import TextClassifier  # noqa: E402

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def url(bert_bundle):
    port = free_port()
    command = [sys.executable, "-m", "ortpipe.cli", "serve", "--bundle", str(bert_bundle),
               "--port", str(port), "--threads", "1"]
    with server(command, port) as (address, _):
        yield address


@pytest.mark.parametrize("client", ["raw", "aiohttp"])
def test_a_level_stops_after_its_request_count(url, client):
    result = asyncio.run(_load(url, list(PROBE_TEXTS), concurrency=4, requests=20, seconds=60, client=client))
    assert result["requests"] == 20 and result["errors"] == 0 and result["concurrency"] == 4
    assert result["sentences_per_s"] > 0 and result["p99_ms"] >= result["p50_ms"] > 0


def test_the_raw_client_reads_statuses_and_bodies(url):
    async def main():
        client = await RawHttpClient.connect(url)
        try:
            return [await client.post_json("/predict", body) for body in ({"inputs": "fine"}, {"nope": 1},
                                                                          {"inputs": "again"})]
        finally:
            client.close()

    (ok, good), (bad, error), (again, _) = asyncio.run(main())
    assert (ok, bad, again) == (200, 422, 200)  # one connection, kept alive across an error
    assert isinstance(json.loads(good)[0]["score"], float) and json.loads(error)["error_type"] == "validation"


def test_the_paired_yardsticks_alternate_server_and_in_process(url, bert_bundle):
    clf = TextClassifier.load(bert_bundle, threads=1)
    texts = list(PROBE_TEXTS)
    c1 = paired_concurrency_1(url, clf, texts, chunk=2)
    assert c1["server_p50_ms"] > 0 and c1["in_process_p50_ms"] > 0
    assert c1["over_in_process_ms"] == pytest.approx(c1["server_p50_ms"] - c1["in_process_p50_ms"])
    c64 = paired_throughput(url, clf, texts, concurrency=4, rounds=2)
    assert len(c64["server_sentences_per_s"]) == len(c64["in_process_sentences_per_s"]) == 2 and c64["ratio"] > 0


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
    level["paired"] = {"server_p50_ms": 3.5, "in_process_p50_ms": 2.6, "over_in_process_ms": 0.9}
    report["servers"]["ortpipe-serve"]["64"] = {**level, "paired": {
        "server_sentences_per_s": [480.0, 500.0], "in_process_sentences_per_s": [600.0, 610.0], "ratio": 0.81}}
    text = format_report(report)
    assert "ortpipe-serve: 3.50 ms against 2.60 in-process, +0.90 ms" in text
    assert "480 / 500 against 600 / 610 sentences/s, median ratio 81 %" in text
