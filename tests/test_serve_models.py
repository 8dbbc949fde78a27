"""One server, many models: real ``ortpipe serve`` subprocesses on loopback with tiny bundles of different labels.

Routing (path, ``model`` field, default), 404, per-model limits, one shared thread pool, fairness between a
long request and a one-sentence one, answers under 64 clients per model, and SIGTERM draining every model.
Every load loop is bounded in count and time and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from servers import serving as shared_serving  # noqa: E402
from ortpipe.runtime import TextClassifier  # noqa: E402

pytestmark = pytest.mark.server

TEXTS = ["a fine film", "dull and long", "I loved every minute of it", "not good", "great acting"]


@contextmanager
def serving(home: Path, *flags: str):
    """The shared real server (tests/servers.py); yields (url, process) once every model is ready."""
    with shared_serving(home, *flags) as (url, process, _log):
        yield url, process


@pytest.fixture(scope="module")
def three(bundles, tmp_path_factory):
    """A server of three models: ``sentiment`` (bert, 3 labels), ``tags`` (multi-label, 4), ``other`` (distilbert)."""
    flags = ["--model", f"sentiment={bundles['bert']}", "--model", f"tags={bundles['bert-multilabel']}",
             "--model", f"other={bundles['distilbert']}", "--variant", "optimized"]
    with serving(tmp_path_factory.mktemp("home"), *flags) as (url, process):
        yield url, process


def _in_process(bundles, name: str):
    path = {"sentiment": bundles["bert"], "tags": bundles["bert-multilabel"], "other": bundles["distilbert"]}[name]
    return TextClassifier.load(path, variant="optimized", threads=1)


def _threads(process) -> int:
    return len(os.listdir(f"/proc/{process.pid}/task"))


# -- routing --------------------------------------------------------------------------------------

def test_routes_by_path_by_model_field_and_by_default(three, bundles):
    url, _ = three
    for name in ("sentiment", "tags", "other"):
        expected = _in_process(bundles, name)(TEXTS[0], top_k=None)
        by_path = httpx.post(f"{url}/models/{name}/predict", json={"inputs": TEXTS[0]}, timeout=30)
        by_field = httpx.post(f"{url}/predict", json={"inputs": TEXTS[0], "model": name}, timeout=30)
        for response in (by_path, by_field):
            assert response.status_code == 200, response.text
            assert [r["label"] for r in response.json()] == [r["label"] for r in expected]
            assert [r["score"] for r in response.json()] == pytest.approx([r["score"] for r in expected], abs=1e-6)
    default = httpx.post(f"{url}/predict", json={"inputs": TEXTS[0]}, timeout=30).json()
    assert sorted(r["label"] for r in default) == ["LABEL_A", "LABEL_B", "LABEL_C"]  # the first: sentiment
    assert httpx.post(f"{url}/invocations", json={"inputs": TEXTS[0]}, timeout=30).json() == default


def test_an_unknown_model_is_404_naming_the_known_ones(three):
    url, _ = three
    for response in (httpx.post(f"{url}/models/nope/predict", json={"inputs": "x"}, timeout=10),
                     httpx.post(f"{url}/predict", json={"inputs": "x", "model": "nope"}, timeout=10),
                     httpx.get(f"{url}/models/nope", timeout=10)):
        assert response.status_code == 404
        assert response.json() == {"error": "no model 'nope' here; the models are ['other', 'sentiment', 'tags']",
                                   "error_type": "not_found"}


def test_models_list_info_ready_and_metrics_per_model(three):
    url, _ = three
    listed = httpx.get(f"{url}/models", timeout=10).json()
    assert listed["default_model"] == "sentiment"
    assert [(m["name"], len(m["labels"]), m["state"]) for m in listed["models"]] == \
        [("sentiment", 3, "ready"), ("tags", 4, "ready"), ("other", 3, "ready")]
    assert httpx.get(f"{url}/models/tags", timeout=10).json()["problem_type"] == "multi_label_classification"
    assert httpx.get(f"{url}/ready", timeout=10).json()["models"] == {"sentiment": True, "tags": True, "other": True}
    httpx.post(f"{url}/models/tags/predict", json={"inputs": "x"}, timeout=10)
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'ortpipe_requests_total{model="tags",route="predict",status="200"}' in metrics
    assert 'ortpipe_queue_depth{model="other"}' in metrics
    paths = httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"]
    assert {"/predict", "/models/{name}/predict", "/models", "/models/{name}"} <= set(paths)


# -- concurrency and limits -------------------------------------------------------------------------

def test_three_models_answered_concurrently_by_64_clients_each_get_their_in_process_answers(three, bundles):
    url, _ = three
    names = ("sentiment", "tags", "other")
    expected = {name: _in_process(bundles, name)(TEXTS, top_k=None) for name in names}
    jobs = [(name, i % len(TEXTS)) for name in names for i in range(64)]

    async def all_at_once():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=192)) as client:
            return await asyncio.gather(*(client.post(f"{url}/models/{name}/predict", json={"inputs": TEXTS[i]})
                                          for name, i in jobs))

    responses = asyncio.run(asyncio.wait_for(all_at_once(), timeout=120))
    for (name, i), response in zip(jobs, responses):
        assert response.status_code == 200, response.text
        want = expected[name][i]
        assert [r["label"] for r in response.json()] == [r["label"] for r in want]
        assert [r["score"] for r in response.json()] == pytest.approx([r["score"] for r in want], abs=1e-6)


THREADS = """
import os, sys
from ortpipe.runtime import TextClassifier

shared = sys.argv[1] == "shared"
models = [TextClassifier.load(path, variant="optimized", threads=2, shared_threads=shared) for path in sys.argv[2:]]
for clf in models:
    clf(["a text", "another one"])
print(len(os.listdir("/proc/self/task")))
"""


def _threads_with(setting: str, *paths) -> int:
    done = subprocess.run([sys.executable, "-c", THREADS, setting, *map(str, paths)], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[-1])


def test_models_on_the_shared_pool_add_no_threads(bundles):
    one, three = (bundles["bert"],), (bundles["bert"], bundles["bert-multilabel"], bundles["distilbert"])
    assert _threads_with("shared", *three) == _threads_with("shared", *one)
    assert _threads_with("own", *three) > _threads_with("own", *one)  # what the shared pool saves: a pool each


def test_the_servers_thread_count_does_not_grow_with_the_models(three, bert_bundle, tmp_path):
    url, process = three
    with serving(tmp_path, "--model", f"one={bert_bundle}") as (one_url, alone):
        for where in (url, one_url):  # the same requests to both, so their HTTP and tokenizer threads match
            httpx.post(f"{where}/predict", json={"inputs": TEXTS * 4}, timeout=30)
        assert _threads(process) <= _threads(alone), "three models started more threads than one"


def test_one_model_flooded_to_429_while_another_still_answers(bundles, tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text(f'[server]\ndefault_model = "roomy"\n\n[models.tight]\nbundle = "{bundles["bert"]}"\n'
                      f'max_queue = 4\n\n[models.roomy]\nbundle = "{bundles["distilbert"]}"\n')
    with serving(tmp_path / "home", "--config", str(config), "--max-batch-size", "1") as (url, _):
        info = httpx.get(f"{url}/models", timeout=10).json()["models"]
        assert [m["limits"]["max_queue"] for m in info] == [4, 4096]

        async def flood():
            async with httpx.AsyncClient(timeout=60) as client:
                tight = [client.post(f"{url}/models/tight/predict", json={"inputs": [[t] for t in TEXTS[:3]]})
                         for _ in range(12)]
                roomy = [client.post(f"{url}/predict", json={"inputs": TEXTS[1]}) for _ in range(12)]
                return await asyncio.gather(*tight), await asyncio.gather(*roomy)

        tight, roomy = asyncio.run(asyncio.wait_for(flood(), timeout=60))
        assert 429 in {r.status_code for r in tight} and {r.status_code for r in tight} <= {200, 429}
        refused = next(r for r in tight if r.status_code == 429)
        assert refused.headers["retry-after"] == "1" and "queue limit of 4" in refused.json()["error"]
        assert {r.status_code for r in roomy} == {200}


# -- fairness -------------------------------------------------------------------------------------

LONG_TEXT = " ".join(["word"] * 120)


@pytest.mark.parametrize("target", ["same", "other"])
def test_a_one_sentence_request_is_answered_while_a_long_request_runs(bundles, tmp_path, target):
    """Three requests of 256 texts of 122 tokens, one text per model call: a sentence sent once they run
    is answered before any of them ends."""
    flags = ["--model", f"big={bundles['bert']}", "--model", f"small={bundles['distilbert']}",
             "--max-batch-size", "1", "--max-batch-tokens", "128", "--max-wait-ms", "0"]
    with serving(tmp_path, *flags) as (url, _):
        done: dict[str, float] = {}

        def long_request():
            response = httpx.post(f"{url}/models/big/predict", timeout=120,
                                  json={"inputs": [[LONG_TEXT]] * 256, "truncate": True})
            assert response.status_code == 200
            done.setdefault("long", time.perf_counter())  # the first of them to end

        workers = [threading.Thread(target=long_request) for _ in range(3)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 30
        while _batches(url) < 8:  # the long request is running
            assert time.monotonic() < deadline
            time.sleep(0.005)
        started = time.perf_counter()
        name = "big" if target == "same" else "small"
        response = httpx.post(f"{url}/models/{name}/predict", json={"inputs": "short"}, timeout=60)
        done["short"] = time.perf_counter()
        for worker in workers:
            worker.join(timeout=120)
        assert response.status_code == 200
        assert done["short"] < done["long"], "the sentence waited for the whole long request"
        print(f"one sentence beside 3 x 256 long texts ({target} model): {1000 * (done['short'] - started):.1f} ms; "
              f"the first long request ended {1000 * (done['long'] - done['short']):.0f} ms later")


def _batches(url: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("ortpipe_batch_size_count"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_sigterm_drains_every_models_queue_then_exits_0(bundles, tmp_path):
    flags = ["--model", f"a={bundles['bert']}", "--model", f"b={bundles['distilbert']}", "--max-batch-size", "1"]
    with serving(tmp_path, *flags) as (url, process):
        async def in_flight():
            async with httpx.AsyncClient(timeout=60) as client:
                jobs = [asyncio.ensure_future(client.post(f"{url}/models/{name}/predict",
                                                          json={"inputs": [[LONG_TEXT]] * 64, "truncate": True}))
                        for name in ("a", "b") for _ in range(4)]
                while _batches(url) < 4:
                    await asyncio.sleep(0.005)
                process.send_signal(signal.SIGTERM)
                unanswered = sum(not job.done() for job in jobs)
                return unanswered, await asyncio.gather(*jobs)

        unanswered, responses = asyncio.run(asyncio.wait_for(in_flight(), timeout=90))
        assert unanswered > 0, "every request was answered before SIGTERM: nothing was drained"
        assert [r.status_code for r in responses] == [200] * 8
        assert process.wait(timeout=60) == 0


@pytest.mark.ray
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")
def test_ray_serve_serves_the_same_multi_model_app_behind_its_key(bundles, tmp_path):
    auth = {"Authorization": "Bearer ray-key"}
    flags = ["--engine", "ray", "--variant", "optimized", "--model", f"sentiment={bundles['bert']}",
             "--model", f"tags={bundles['bert-multilabel']}", "--default-model", "tags", "--api-key", "ray-key"]
    with shared_serving(tmp_path, *flags, headers=auth, threads=1, env={"RAY_ADDRESS": ""},
                        ready_timeout=150) as (url, process, _), \
            httpx.Client(base_url=url, headers=auth, timeout=30) as client:
        assert httpx.post(f"{url}/predict", json={"inputs": "x"}, timeout=10).status_code == 401  # keys hold there too
        listed = client.get("/models").json()
        assert listed["default_model"] == "tags" and [m["name"] for m in listed["models"]] == ["sentiment", "tags"]
        for name in ("sentiment", "tags"):
            expected = _in_process(bundles, name)(TEXTS[1], top_k=None)
            got = client.post(f"/models/{name}/predict", json={"inputs": TEXTS[1]}).json()
            assert [r["label"] for r in got] == [r["label"] for r in expected]
        assert len(client.post("/predict", json={"inputs": TEXTS[1]}).json()) == 4  # the default: tags, 4 labels
        assert client.post("/predict", json={"inputs": "x", "model": "nope"}).status_code == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
