"""A server safe to expose: API keys, hot reload without a dropped request, hostile input.

Real ``ortpipe serve`` subprocesses on loopback; every load loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from servers import metric_sum, serving as shared_serving  # noqa: E402
from ortpipe.runtime import TextClassifier  # noqa: E402
from ortpipe.serve.security import allowed_bundle  # noqa: E402

pytestmark = pytest.mark.server

KEY = "k3y-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = ["a fine film", "dull and long", "I loved every minute of it", "not good", "great acting"]


def serving(home: Path, *flags: str):
    """The shared real server (tests/servers.py), polled with the key."""
    return shared_serving(home, *flags, headers=AUTH)


def test_every_route_but_health_needs_the_key_and_no_log_line_shows_it(bert_bundle, tmp_path):
    with serving(tmp_path, "--model", f"m={bert_bundle}", "--api-key", KEY) as (url, _, log):
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        # (/docs and /openapi.json stay open: the schema holds no secret; --private-docs closes them, which
        # tests/test_serve_hostile.py checks)
        for method, route in (("GET", "/ready"), ("GET", "/info"), ("GET", "/models"), ("GET", "/metrics"),
                              ("POST", "/predict"), ("POST", "/models/m/predict"), ("POST", "/classify"),
                              ("POST", "/v1/classify")):
            body = {"input": "x"} if route.endswith("classify") else {"inputs": "x"}
            missing = httpx.request(method, f"{url}{route}", json=body, timeout=10)
            wrong = httpx.request(method, f"{url}{route}", json=body, timeout=10,
                                  headers={"Authorization": "Bearer nope"})
            right = httpx.request(method, f"{url}{route}", json=body, timeout=10, headers=AUTH)
            assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200), route
            assert missing.json()["error_type"] == "unauthorized" and "no API key" in missing.json()["error"]
            assert "wrong API key" in wrong.json()["error"] and wrong.headers["www-authenticate"] == "Bearer"
            assert KEY not in wrong.text + missing.text
        assert KEY not in httpx.get(f"{url}/info", headers=AUTH, timeout=10).text
    assert KEY not in log.read_text()


def test_public_metrics_opens_only_metrics(bert_bundle, tmp_path):
    with serving(tmp_path, "--bundle", str(bert_bundle), "--api-key", KEY, "--public-metrics") as (url, _, _log):
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
        assert httpx.post(f"{url}/predict", json={"inputs": "x"}, timeout=10).status_code == 401


def test_loading_over_http_needs_a_key(bert_bundle, tmp_path):
    with serving(tmp_path, "--model", f"m={bert_bundle}") as (url, _, _log):
        response = httpx.post(f"{url}/models/m/load", json={}, timeout=10)
        assert response.status_code == 403 and "needs an API key" in response.json()["error"]
        assert httpx.post(f"{url}/models/m/unload", timeout=10).status_code == 403


# -- reload ---------------------------------------------------------------------------------------

def test_reload_under_load_from_32_clients_drops_nothing_and_switches_once(bundles, tmp_path):
    """v1 has 3 labels, v2 (put in v1's place, then re-read with {}) has 4: every answer is exactly one of them."""
    root = tmp_path / "models"
    live = root / "sentiment"
    shutil.copytree(bundles["bert"], live)
    v1 = TextClassifier.load(bundles["bert"], variant="optimized", threads=1)(TEXTS, top_k=None)
    v2 = TextClassifier.load(bundles["bert-multilabel"], variant="optimized", threads=1)(TEXTS, top_k=None)
    flags = ["--model", f"sentiment={live}", "--api-key", KEY, "--model-root", str(root), "--variant", "optimized"]
    with serving(tmp_path / "home", *flags) as (url, _, _log):
        seen: list[list[str]] = [[] for _ in range(32)]
        failures: list[str] = []

        async def client(index: int, http, stop: asyncio.Event):
            i = index
            while not stop.is_set() or len(seen[index]) < 3:
                text = i % len(TEXTS)
                response = await http.post(f"{url}/predict", json={"inputs": TEXTS[text]}, headers=AUTH)
                i += 1
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                    continue
                got = response.json()
                version = "v1" if got == v1[text] else "v2" if got == v2[text] else None
                if version is None:
                    failures.append(f"an answer of neither version: {got}")
                seen[index].append(version)
                if len(seen[index]) > 400:
                    return

        async def run():
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=40)) as http:
                stop = asyncio.Event()
                clients = [asyncio.ensure_future(client(k, http, stop)) for k in range(32)]
                await asyncio.sleep(0.5)
                shutil.rmtree(live)
                shutil.copytree(bundles["bert-multilabel"], live)
                reloaded = await http.post(f"{url}/models/sentiment/load", json={}, headers=AUTH)
                await asyncio.sleep(0.5)
                stop.set()
                await asyncio.gather(*clients)
                return reloaded

        reloaded = asyncio.run(asyncio.wait_for(run(), timeout=120))
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["replaced"] is True and reloaded.json()["probe"]["passed"] is True
        assert failures == []
        for versions in seen:  # each client saw v1, then v2, never back
            assert versions == sorted(versions) and versions[-1] == "v2"
        assert any(versions[0] == "v1" for versions in seen)
        assert len(httpx.get(f"{url}/info", headers=AUTH, timeout=10).json()["labels"]) == 4


def test_a_corrupted_bundle_leaves_the_old_one_serving(bert_bundle, tmp_path):
    root = tmp_path / "models"
    broken = root / "broken"
    shutil.copytree(bert_bundle, broken)
    with open(broken / "model.optimized.onnx", "r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00" * 64)
    flags = ["--model", f"m={bert_bundle}", "--api-key", KEY, "--model-root", str(root), "--variant", "optimized"]
    with serving(tmp_path / "home", *flags) as (url, _, _log):
        before = httpx.post(f"{url}/predict", json={"inputs": "x"}, headers=AUTH, timeout=10).json()
        response = httpx.post(f"{url}/models/m/load", json={"bundle": str(broken)}, headers=AUTH, timeout=60)
        assert response.status_code == 422, response.text
        assert "IntegrityError" in response.json()["error"] and "the old version still serves" in response.json()["error"]
        assert httpx.post(f"{url}/predict", json={"inputs": "x"}, headers=AUTH, timeout=10).json() == before
        assert httpx.get(f"{url}/info", headers=AUTH, timeout=10).json()["bundle"] == str(bert_bundle)


def test_paths_outside_the_model_roots_are_refused_and_new_names_load_and_unload(bundles, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(bundles["distilbert"], root / "extra")
    flags = ["--model", f"m={bundles['bert']}", "--api-key", KEY, "--model-root", str(root)]
    with serving(tmp_path / "home", *flags) as (url, _, _log):
        outside = httpx.post(f"{url}/models/x/load", json={"bundle": str(bundles["distilbert"])}, headers=AUTH,
                             timeout=30)
        assert outside.status_code == 403 and "--model-root" in outside.json()["error"]
        sneaky = httpx.post(f"{url}/models/x/load", json={"bundle": f"{root}/../../{bundles['distilbert'].name}"},
                            headers=AUTH, timeout=30)
        assert sneaky.status_code == 403
        added = httpx.post(f"{url}/models/x/load", json={"bundle": str(root / "extra")}, headers=AUTH, timeout=60)
        assert added.status_code == 200 and added.json()["replaced"] is False
        assert httpx.post(f"{url}/models/x/predict", json={"inputs": "x"}, headers=AUTH, timeout=10).status_code == 200
        assert httpx.post(f"{url}/models/m/unload", headers=AUTH, timeout=10).status_code == 409  # the default
        assert httpx.post(f"{url}/models/x/unload", headers=AUTH, timeout=10).json() == {"model": "x",
                                                                                       "unloaded": True}
        gone = httpx.post(f"{url}/models/x/predict", json={"inputs": "x"}, headers=AUTH, timeout=10)
        assert gone.status_code == 404
    assert allowed_bundle(root / "extra", [root]) == (root / "extra").resolve()


# -- hostile input ----------------------------------------------------------------------------------

def test_hostile_bodies_and_headers_are_4xx_that_say_why(bert_bundle, tmp_path):
    with serving(tmp_path, "--bundle", str(bert_bundle), "--max-body", "65536") as (url, _, _log):
        nested = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        response = httpx.post(f"{url}/predict", content=nested, timeout=10)
        assert response.status_code == 400 and "nested too deeply" in response.json()["error"]
        for bad in ("nan", "inf", "-inf", "-5", "soon"):
            response = httpx.post(f"{url}/predict", json={"inputs": "x"}, headers={"x-timeout-ms": bad}, timeout=10)
            assert response.status_code == 422, bad
            assert "x-timeout-ms must be a finite number of milliseconds" in response.json()["error"]
        response = httpx.post(f"{url}/predict", content=b'{"inputs": "caf\xe9"}', timeout=10)
        assert response.status_code == 400 and "not UTF-8" in response.json()["error"]

        def chunks():
            for _ in range(20):
                yield b"x" * 8192

        chunked = httpx.post(f"{url}/predict", content=chunks(), timeout=10)  # no Content-Length
        assert chunked.status_code == 413 and "over the limit of 65536 bytes" in chunked.json()["error"]


def test_sighup_rereads_the_config(bundles, tmp_path):
    import signal
    import time

    config = tmp_path / "serve.toml"
    config.write_text(f'[models.a]\nbundle = "{bundles["bert"]}"\n\n[models.gone]\nbundle = "{bundles["bert"]}"\n')
    with serving(tmp_path / "home", "--config", str(config)) as (url, process, log):
        config.write_text(f'[models.a]\nbundle = "{bundles["bert-multilabel"]}"\nmax_queue = 7\n\n'
                          f'[models.b]\nbundle = "{bundles["distilbert"]}"\n')
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while True:
            models = {m["name"]: m for m in httpx.get(f"{url}/models", timeout=10).json()["models"]}
            if set(models) == {"a", "b"} and len(models["a"]["labels"]) == 4:
                break
            assert time.monotonic() < deadline, (models, log.read_text())
            time.sleep(0.2)
        assert models["a"]["limits"]["max_queue"] == 7
        assert httpx.post(f"{url}/models/b/predict", json={"inputs": "x"}, timeout=10).status_code == 200
        assert "SIGHUP: gone unloaded" in log.read_text()


def _wait_until_all_queued_and_run(url: str, queued: int, run_after: int, timeout: float = 60) -> None:
    """Waits until ``queued`` texts were run or are queued (read from one scrape), then until ``run_after``
    more texts have run."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        scrape = httpx.get(f"{url}/metrics", timeout=10).text
        run = metric_sum(url, "ortpipe_texts_total", text=scrape)
        if run + metric_sum(url, "ortpipe_queue_depth", text=scrape) >= queued:
            break
        assert time.monotonic() < deadline, "the three requests were never all queued"
        time.sleep(0.002)
    start = metric_sum(url, "ortpipe_texts_total", text=scrape)
    while metric_sum(url, "ortpipe_texts_total") < start + run_after:
        assert time.monotonic() < deadline, "the model stopped running texts"
        time.sleep(0.002)


def test_a_client_that_leaves_mid_request_has_its_unrun_texts_dropped(bert_bundle, tmp_path):
    """Three requests of 256 long texts, one text per model call, taking turns; the third client leaves once
    all three are queued and 30 more texts have run (about 10 of its own, taking turns), with most of its
    texts not yet run: those are dropped, never run, and its request is a 499. (A fixed 100 ms wait was too
    short on a slow machine: the client left before its request was queued.)"""
    import json
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    long = [["word " * 120]] * 256
    with serving(tmp_path, "--bundle", str(bert_bundle), "--max-batch-size", "1") as (url, _, _log):
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"inputs": long, "truncate": True}).encode()
        with ThreadPoolExecutor(2) as pool:
            heavy = [pool.submit(httpx.post, f"{url}/predict", json={"inputs": long, "truncate": True}, timeout=120)
                     for _ in range(2)]
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                _wait_until_all_queued_and_run(url, queued=3 * 256, run_after=30)
            assert all(job.result().status_code == 200 for job in heavy)
        time.sleep(0.5)
        dropped = metric_sum(url, "ortpipe_dropped_texts_total", 'reason="disconnected"')
        assert metric_sum(url, "ortpipe_rejections_total", 'reason="disconnected"') == 1
        assert metric_sum(url, "ortpipe_requests_total", 'status="499"') == 1
        assert 0 < dropped < 256, "the leaving client's texts were all run, or none: it left too late or too soon"
        assert metric_sum(url, "ortpipe_texts_total") + dropped == 3 * 256  # each text run or dropped, once
