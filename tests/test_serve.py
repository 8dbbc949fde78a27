"""``ortpipe serve``: a real server in a subprocess on loopback, a real HTTP client.

The API tests run twice: against ``ortpipe serve`` and against ``ortpipe serve --engine ray``
(the same app as a Ray Serve deployment), which must answer the same requests the same way.
Every load loop here is bounded in count and time and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from ortpipe.benchmarks.serve_load import free_port  # noqa: E402
from servers import metric_sum, serving  # noqa: E402
from ortpipe.export.validate import PROBE_TEXTS  # noqa: E402
from ortpipe.runtime import TextClassifier  # noqa: E402
from ortpipe.runtime.manifest import sha256_of  # noqa: E402
from bundle_edits import edit_manifest  # noqa: E402

pytestmark = pytest.mark.server

TEXTS = list(PROBE_TEXTS)
ENGINES = ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the ray extra is not installed: pip install 'ortpipe[ray]'")])]


@contextmanager
def running_server(bundle: Path, home: Path, *flags: str, engine: str = "local"):
    """``ortpipe serve`` (tests/servers.py) on a free loopback port; yields (url, process) once ``/ready`` is 200.

    Locally on 2 threads with 2 batches at once, so batches side by side run on the one-thread session
    and lone ones on the 2-thread session; a Ray replica on 1 CPU.
    """
    local = ["--concurrent-batches", "2"] if engine == "local" else []
    with serving(home, "--bundle", str(bundle), *local, "--engine", engine, *flags, threads=2 if engine == "local"
                 else 1, env={"RAY_ADDRESS": ""}, ready_timeout=60 if engine == "local" else 150) as (url, process, _):
        yield url, process


@pytest.fixture(scope="module", params=ENGINES)
def server(request, bert_bundle, tmp_path_factory):
    # the variant named, not left to the export's timing (which picks int8 or optimized by a hair on a tiny model)
    with running_server(bert_bundle, tmp_path_factory.mktemp("home"), "--variant", "optimized",
                        "--max-client-batch", "32", "--max-body", "65536", engine=request.param) as (url, _):
        yield url


def _post(url: str, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=30, **kwargs)


def _labels(text: str) -> set[str]:
    return set(filter(None, text.strip("{}").split(",")))


def _metric(url: str, name: str) -> float:
    """The sum of a metric's samples whose labels include those of ``name`` (``'x_total{reason="timeout"}'``)."""
    family, _, wanted = name.partition("{")
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        sample, _, value = line.rpartition(" ")
        found, _, labels = sample.partition("{")
        if found == family and _labels(wanted) <= _labels(labels):
            total += float(value)
    return total


# -- the API ----------------------------------------------------------------------------------

def test_single_text_gets_every_label_best_first_with_tei_headers(server, bert_bundle):
    response = _post(server, {"inputs": TEXTS[0]})
    assert response.status_code == 200
    expected = TextClassifier.load(bert_bundle, variant="optimized", threads=1)(TEXTS[0], top_k=None)
    assert response.json() == expected
    for header in ("x-request-id", "x-queue-time", "x-tokenization-time", "x-inference-time"):
        assert header in response.headers
    assert _post(server, {"inputs": "x"}, headers={"x-request-id": "abc"}).headers["x-request-id"] == "abc"


def test_tei_pairs_and_batches(server, bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1)  # as the server runs it
    pair = _post(server, {"inputs": ["A man sleeps.", "A person rests."]}).json()
    assert pair == clf({"text": "A man sleeps.", "text_pair": "A person rests."}, top_k=None)
    batch = _post(server, {"inputs": [["good"], ["A man sleeps.", "A person rests."], ["bad"]]}).json()
    assert batch == clf(["good", {"text": "A man sleeps.", "text_pair": "A person rests."}, "bad"], top_k=None)
    three = _post(server, {"inputs": ["a", "b", "c"]}).json()
    assert len(three) == 3 and all(isinstance(row, list) for row in three)


def test_pipeline_parameters_and_raw_scores(server, bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1)
    top1 = _post(server, {"inputs": "good", "parameters": {"top_k": 1, "function_to_apply": "sigmoid"}}).json()
    assert top1 == [clf("good", top_k=1, function_to_apply="sigmoid")]  # the inference API nests a single text
    raw = _post(server, {"inputs": "good", "raw_scores": True}).json()
    assert raw == clf("good", top_k=None, function_to_apply="none")


def test_other_routes_answer_like_predict(server):
    expected = _post(server, {"inputs": "good"}).json()
    for route in ("/", "/invocations"):
        assert httpx.post(f"{server}{route}", json={"inputs": "good"}, timeout=10).json() == expected


def test_health_ready_info_metrics_docs(server, request):
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server}/ready").status_code == 200
    info = httpx.get(f"{server}/info").json()
    assert info["variant"] == "optimized" and info["labels"] == ["LABEL_A", "LABEL_B", "LABEL_C"]
    assert info["limits"]["max_client_batch"] == 32 and info["limits"]["max_queue"] == 4096
    # a Ray replica runs one batch at a time, whatever the flag: replicas are what run side by side
    assert info["limits"]["concurrent_batches"] == (2 if request.node.callspec.params["server"] == "local" else 1)
    assert info["memory"]["setting"] == "shrink" and info["memory"]["requested"] == "lean"
    metrics = httpx.get(f"{server}/metrics").text
    assert 'ortpipe_memory_info{model="bert",requested="lean",setting="shrink"} 1.0' in metrics
    for name in ("process_resident_memory_bytes", "ortpipe_arena_shrinks", "ortpipe_largest_batch_tokens",
                 "ortpipe_requests_total", "ortpipe_queue_depth",
                 "ortpipe_batch_size", "ortpipe_batch_tokens",
                 "ortpipe_batch_padding_ratio", "ortpipe_queue_seconds", "ortpipe_tokenize_seconds",
                 "ortpipe_inference_seconds"):
        assert name in metrics
    schema = httpx.get(f"{server}/openapi.json").json()
    assert "/predict" in schema["paths"]


def test_huggingface_inference_client_gets_the_labels(server, bert_bundle):
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(model=server, timeout=30)
    result = client.text_classification("This course is amazing!")
    expected = TextClassifier.load(bert_bundle, variant="optimized", threads=1)("This course is amazing!", top_k=None)
    assert result[0].label == expected[0]["label"]
    assert result[0].score == pytest.approx(expected[0]["score"], abs=1e-6)


# -- limits and bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("body,status,needle", [
    ({"inputs": ["t"] * 33}, 413, "the limit is 32"),
    ({"inputs": []}, 422, "empty batch"),
    ({"inputs": 42}, 422, "got int"),
    ({"inputs": [["a", "b", "c"]]}, 422, "inputs[0]"),
    ({"inputs": ["ok", None, "x"]}, 422, "inputs[1]"),
    ({"inputs": "x", "top_k": 0}, 422, "top_k"),
    ({"inputs": "x", "truncate": "yes"}, 422, "'truncate' must be true or false"),
    ({"texts": "x"}, 422, "no 'inputs'"),
    ({"inputs": "word " * 500}, 422, "inputs[0] has 502 tokens, more than the model's limit of 128"),
])
def test_bad_requests_get_a_json_error_naming_the_problem(server, body, status, needle):
    response = _post(server, body)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"] and response.json()["error_type"] == "validation"


def test_a_lone_surrogate_escape_is_invalid_unicode(server):
    response = httpx.post(f"{server}/predict", content=b'{"inputs": ["fine", "bad \\ud800", "x"]}', timeout=10)
    assert response.status_code == 422
    assert "inputs[1] is not valid Unicode: lone surrogate U+D800" in response.json()["error"]


def test_truncation_is_opt_in_and_cuts_either_end(server):
    long = "word " * 500
    assert _post(server, {"inputs": long, "truncate": True}).status_code == 200
    assert _post(server, {"inputs": long, "truncate": True, "truncation_direction": "left"}).status_code == 200


def test_unparsable_json_is_400_and_a_big_body_413(server):
    bad = httpx.post(f"{server}/predict", content=b'{"inputs": [}', timeout=10)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    big = httpx.post(f"{server}/predict", content=b'{"inputs": "' + b"a" * 70_000 + b'"}', timeout=10)
    assert big.status_code == 413 and "65536" in big.json()["error"]


def test_a_request_past_its_deadline_is_504_and_never_run(server):
    texts_before = _metric(server, "ortpipe_texts_total")
    response = _post(server, {"inputs": ["a", "b", "c"]}, headers={"x-timeout-ms": "0"})
    assert response.status_code == 504 and response.json()["error_type"] == "timeout"
    assert _metric(server, "ortpipe_texts_total") == texts_before
    assert _metric(server, 'ortpipe_rejections_total{reason="timeout"}') >= 1
    assert _metric(server, 'ortpipe_dropped_texts_total{reason="timeout"}') >= 3


# -- long texts through windows -----------------------------------------------------------------

LONG = " ".join(f"{TEXTS[i % len(TEXTS)]} Part {i}." for i in range(60))  # several hundred tokens


def test_windows_in_the_body_give_the_in_process_answers(server, bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1)
    expected = clf([LONG, TEXTS[0]], top_k=None, window=32, stride=8, aggregate="max")
    response = _post(server, {"inputs": [[LONG], [TEXTS[0]]], "window": 32, "stride": 8, "aggregate": "max"})
    assert response.status_code == 200, response.text
    got = response.json()
    assert [[r["label"] for r in text] for text in got] == [[r["label"] for r in text] for text in expected]
    for text, want in zip(got, expected):
        assert [r["score"] for r in text] == pytest.approx([r["score"] for r in want], abs=1e-6)
    assert _post(server, {"inputs": LONG}).status_code == 422  # windows are opt-in: TEI's answer to a long text


def test_return_windows_in_parameters_gives_each_windows_span(server, bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1)
    (expected,) = clf([LONG], top_k=None, window="auto", return_windows=True)
    response = _post(server, {"inputs": LONG, "parameters": {"window": "auto", "return_windows": True}})
    assert response.status_code == 200, response.text
    (got,) = response.json()  # the inference API's form: a single text's answer wrapped in a list
    assert set(got) == {"labels", "windows"}
    assert [(w["start"], w["end"], w["label"]) for w in got["windows"]] == \
        [(w["start"], w["end"], w["label"]) for w in expected["windows"]]


@pytest.mark.parametrize("fields, needle", [
    ({"window": 8}, "window must be an int from 16 to the model's limit of 128 tokens"),
    ({"window": 32, "stride": 31}, "stride must be an int from 0 to 29 for window=32"),
    ({"window": 32, "aggregate": "median"}, "aggregate must be one of ['mean', 'max', 'first']"),
    ({"window": 32, "truncate": False}, '"truncate": false cannot be used with "window"'),
    ({"stride": 4}, "stride needs"),
    ({"window": 32, "return_windows": "yes"}, "return_windows must be True or False"),
])
def test_bad_window_fields_are_422_naming_the_value(server, fields, needle):
    response = _post(server, {"inputs": LONG, **fields})
    assert response.status_code == 422, response.text
    assert needle in response.json()["error"]


def test_truncated_texts_are_counted_in_the_metrics(server):
    before = _metric(server, "ortpipe_truncated_texts_total")
    assert _post(server, {"inputs": [[LONG], ["short"], [LONG]], "truncate": True}).status_code == 200
    assert _metric(server, "ortpipe_truncated_texts_total") == before + 2


def test_a_server_window_default_the_windows_cap_and_info(bert_bundle, tmp_path):
    with running_server(bert_bundle, tmp_path, "--variant", "optimized", "--window", "32",
                        "--max-client-windows", "12") as (url, _):
        info = httpx.get(f"{url}/info", timeout=10).json()
        assert info["window"] == {"recommended": None, "default": 32, "max_client_windows": 12}
        medium = " ".join(TEXTS[:4])  # a few windows of 32 tokens
        clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1)
        response = _post(url, {"inputs": medium})
        assert response.status_code == 200
        assert response.json()[0]["label"] == clf([medium], top_k=None, window=32)[0][0]["label"]
        too_many = _post(url, {"inputs": LONG})
        assert too_many.status_code == 413, too_many.text
        assert "the limit is 12 (--max-client-windows)" in too_many.json()["error"]
        off = _post(url, {"inputs": LONG, "window": None, "truncate": True})  # null: windows off for this request
        assert off.status_code == 200
        assert _metric(url, "ortpipe_truncated_texts_total") == 1
        schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
        body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert {"window", "stride", "aggregate", "return_windows"} <= set(body["properties"])


def test_a_window_the_model_cannot_take_stops_the_server_with_one_line(bert_bundle, tmp_path):
    done = subprocess.run([sys.executable, "-m", "ortpipe.cli", "serve", "--bundle", str(bert_bundle),
                           "--window", "4096", "--port", str(free_port())], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "ORTPIPE_HOME": str(tmp_path)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--window 4096: window must be an int from 16 to the model's limit of 128 tokens" in done.stderr


# -- batching under concurrency ---------------------------------------------------------------

def test_64_concurrent_clients_get_exactly_the_in_process_results(server, bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1)
    n = len(TEXTS)
    requests = [TEXTS[i % n] if i % 3 else [TEXTS[(i + k) % n] for k in range(3)] for i in range(64)]

    async def all_at_once():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
            return await asyncio.gather(*(client.post(f"{server}/predict", json={"inputs": r})
                                          for r in requests))

    batches_before = _metric(server, "ortpipe_batch_size_count")
    responses = asyncio.run(asyncio.wait_for(all_at_once(), timeout=120))
    for body, response in zip(requests, responses):
        assert response.status_code == 200
        assert response.json() == clf(body, top_k=None)  # float variant: bit-identical however batched
    assert _metric(server, "ortpipe_batch_size_count") - batches_before < 64  # texts were batched together


# -- overload, failures, disconnects, drain (servers of their own) ---------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_a_full_queue_answers_429_with_retry_after(bert_bundle, tmp_path, engine):
    with running_server(bert_bundle, tmp_path, "--max-queue", "8", "--max-wait-ms", "400", engine=engine) as (url, _):
        async def burst():
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.post(f"{url}/predict", json={"inputs": TEXTS[:8]})
                                              for _ in range(6)))

        responses = asyncio.run(asyncio.wait_for(burst(), timeout=60))
        statuses = [r.status_code for r in responses]
        overloaded = [r for r in responses if r.status_code == 429]
        assert 200 in statuses and overloaded, statuses
        assert overloaded[0].headers["retry-after"] == "1"
        assert overloaded[0].json()["error_type"] == "overloaded" and "--max-queue" in overloaded[0].json()["error"]


def test_an_inference_failure_is_500_and_the_server_goes_on(bundle_copy, tmp_path):
    """A token id past the model's vocabulary makes ONNX Runtime's Gather fail for real."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundle_copy / "tokenizer.json"))
    tokenizer.add_tokens(["zzqqxxunseen"])  # id 30522: the embedding table has 30522 rows
    tokenizer.save(str(bundle_copy / "tokenizer.json"))
    edit_manifest(bundle_copy, lambda m: m.update(tokenizer_sha256=sha256_of(bundle_copy / "tokenizer.json")))
    with running_server(bundle_copy, tmp_path, "--variant", "fp32") as (url, _):
        failed = _post(url, {"inputs": "zzqqxxunseen"})
        assert failed.status_code == 500 and failed.json()["error_type"] == "backend"
        assert _post(url, {"inputs": "a fine text"}).status_code == 200


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_finishes_every_request_in_flight_then_exits_0(bert_bundle, tmp_path, engine):
    """Five requests of 64 long texts each (one model call per text) are in flight when SIGTERM comes."""
    heavy = {"inputs": ["word " * 200] * 64, "truncate": True}
    with running_server(bert_bundle, tmp_path, "--max-batch-size", "1", engine=engine) as (url, process):
        async def in_flight():
            finished: list[float] = []

            async def one(client):
                response = await client.post(f"{url}/predict", json=heavy)
                finished.append(time.perf_counter())
                return response

            async with httpx.AsyncClient(timeout=60) as client:
                sent = [asyncio.ensure_future(one(client)) for _ in range(5)]
                await asyncio.sleep(0.05)
                # locally the server reads all five at once: wait until all are tokenized (queued next), as 50 ms
                # fell short once on a VM whose host took the CPUs (Ray's router hands its replica one at a time)
                deadline = time.monotonic() + 30
                while engine == "local" and await asyncio.to_thread(
                        metric_sum, url, "ortpipe_tokenize_seconds_count") < 5:
                    assert time.monotonic() < deadline, "the five requests never all reached the server"
                    await asyncio.sleep(0.005)
                process.send_signal(signal.SIGTERM)
                signalled = time.perf_counter()
                return await asyncio.gather(*sent), finished, signalled

        responses, finished, signalled = asyncio.run(asyncio.wait_for(in_flight(), timeout=60))
        assert [r.status_code for r in responses] == [200] * 5
        assert all(len(r.json()) == 64 for r in responses)
        assert min(finished) > signalled, "the requests were not in flight when SIGTERM came"
        assert process.wait(timeout=30) == 0


def test_two_strings_are_one_pair_and_the_answer_says_so(server):
    """Issue 30, item 1: TEI reads ["a", "b"] as one pair; a Warning header tells a user who meant two texts."""
    pair = _post(server, {"inputs": ["I was charged twice", "the app crashes"]})
    assert pair.status_code == 200 and isinstance(pair.json()[0], dict)  # one answer: one pair
    assert "read as one text pair" in pair.headers["warning"]
    batch = _post(server, {"inputs": [["I was charged twice"], ["the app crashes"]]})
    assert len(batch.json()) == 2 and "warning" not in batch.headers
