"""The app in-process: the ASGI fast path against the FastAPI route, and the side-by-side session.

The HTTP behaviour itself is tested on a real server in ``test_serve.py``; here the app is driven
through its ASGI interface, to reach the FastAPI route that a real server only uses when the app is
mounted under a prefix.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")

from ortpipe.runtime import TextClassifier  # noqa: E402
from ortpipe.serve import ServeConfig, create_app  # noqa: E402
from ortpipe.serve.app import concurrent_batches_for, single_thread_model  # noqa: E402

TEXTS = ["This course is amazing!", "I hate this so much!", "a much longer sentence, to be padded against"]


@pytest.fixture(scope="module")
def clf(bert_bundle):
    return TextClassifier.load(bert_bundle, variant="optimized", threads=2)


async def _call(app, path: str, body: bytes, root_path: str = "") -> tuple[int, dict, bytes]:
    """One POST through the ASGI interface: (status, headers, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": root_path + path, "raw_path": (root_path + path).encode(), "root_path": root_path,
             "query_string": b"", "headers": [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "state": {}}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stays connected

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def _serving(app, work):
    """Run ``work()`` between the app's lifespan startup and shutdown."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                         inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        return await work()
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan


@pytest.mark.parametrize("body", [{"inputs": TEXTS[0]}, {"inputs": [[t] for t in TEXTS], "raw_scores": True},
                                  {"inputs": TEXTS[0], "parameters": {"top_k": 1}}, {"inputs": []}, {"nope": 1}])
def test_the_fast_path_answers_as_the_fastapi_route(clf, body):
    app = create_app(clf, ServeConfig())
    raw = json.dumps(body).encode()

    async def both():
        return (await _call(app, "/predict", raw),  # the pure ASGI path
                await _call(app, "/predict", raw, root_path="/api"))  # mounted: FastAPI's route

    (fast_status, fast_headers, fast_body), (routed_status, routed_headers, routed_body) = asyncio.run(
        asyncio.wait_for(_serving(app, both), timeout=60))
    assert fast_status == routed_status and fast_body == routed_body
    assert {"x-request-id", "x-queue-time", "x-tokenization-time", "x-inference-time"} <= set(fast_headers)
    assert fast_headers["content-type"] == routed_headers["content-type"] == "application/json"
    assert int(fast_headers["content-length"]) == len(fast_body)


def test_side_by_side_batches_get_a_one_thread_session_with_the_same_logits(clf, bert_bundle):
    narrow = single_thread_model(clf, concurrent_batches=2)
    assert narrow.session.get_session_options().intra_op_num_threads == 1
    encoded = clf.tokenizer(TEXTS)
    np.testing.assert_array_equal(narrow(encoded), clf.model(encoded))  # float: the same bits on 1 or 2 threads


def test_no_second_session_when_it_would_be_the_same(clf, bert_bundle):
    assert single_thread_model(clf, concurrent_batches=1) is None
    assert single_thread_model(TextClassifier.load(bert_bundle, variant="optimized", threads=1), 2) is None


def test_batches_run_side_by_side_where_a_one_thread_session_can_and_memory_is_fast(clf, bert_bundle):
    fast = TextClassifier.load(bert_bundle, variant="optimized", threads=2, memory="fast")
    one_thread = TextClassifier.load(bert_bundle, variant="optimized", threads=1, memory="fast")
    assert ServeConfig().concurrent_batches == 0  # auto
    assert concurrent_batches_for(0, [fast]) == 2
    assert concurrent_batches_for(0, [clf]) == 1  # lean, the default: one session
    assert concurrent_batches_for(0, [fast, one_thread]) == 1  # every model must be able to
    assert concurrent_batches_for(1, [fast]) == 1 and concurrent_batches_for(3, [clf]) == 3  # as asked
    app = create_app({"a": fast, "b": (fast, ServeConfig(max_queue=10))})
    assert app.state.ortpipe.scheduler.workers == 2 and app.state.ortpipe.config.concurrent_batches == 2
    assert {p.info()["limits"]["concurrent_batches"] for p in app.state.served.predictors.values()} == {2}
    assert app.state.served.predictors["b"].config.max_queue == 10
    assert create_app(clf).state.ortpipe.scheduler.workers == 1


def test_while_draining_ready_and_new_predictions_are_503(clf):
    from ortpipe.serve.app import start_draining

    app = create_app(clf, ServeConfig())

    async def drained():
        before = await _call(app, "/predict", b'{"inputs": "x"}')
        start_draining(app)
        return before, await _call(app, "/predict", b'{"inputs": "x"}'), await _get(app, "/ready")

    before, refused, ready = asyncio.run(asyncio.wait_for(_serving(app, drained), timeout=60))
    assert before[0] == 200
    assert refused[0] == 503 and json.loads(refused[2])["error_type"] == "unhealthy"
    assert ready[0] == 503 and json.loads(ready[2]) == {"ready": False, "draining": True, "models": {"bert": True}}


async def _get(app, path: str) -> tuple[int, dict, bytes]:
    sent: list[dict] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "state": {}}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {}, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
