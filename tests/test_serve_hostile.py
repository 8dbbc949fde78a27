"""What a hostile probe broke in the server, each case reproduced against a real ``ortpipe serve`` (issue 27).

Every load loop is bounded in count and time and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from servers import rss_mb, serving  # noqa: E402

pytestmark = pytest.mark.server

KEY = "k3y-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
LONG = " ".join(["the plot moves slowly but the acting is wonderful and I would watch it again"] * 100)


def _gauge(url: str, family: str, model: str) -> float:
    for line in httpx.get(f"{url}/metrics", headers=AUTH, timeout=10).text.splitlines():
        if line.startswith(family + "{") and f'model="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def two_models(bundles, tmp_path):
    """Models ``a`` and ``b`` with keys, ``b``'s bundle under a --model-root; yields (url, process, log, root)."""
    root = tmp_path / "models"
    shutil.copytree(bundles["bert"], root / "b")
    shutil.copytree(bundles["distilbert"], root / "c")
    flags = ["--model", f"a={bundles['bert']}", "--model", f"b={root / 'b'}", "--api-key", KEY,
             "--model-root", str(root), "--variant", "optimized", "--max-queue", "20000"]
    with serving(tmp_path / "home", *flags, headers=AUTH) as (url, process, log):
        yield url, process, log, root


def test_reload_and_unload_with_long_requests_in_flight_answer_every_request(two_models):
    """Case 1: windowed requests still tokenizing when the switch comes are answered, never left hanging."""
    url, _, log, root = two_models
    body = {"inputs": [LONG] * 10, "window": 16}

    async def burst(http, model: str, action: str) -> list[int]:
        requests = [asyncio.ensure_future(http.post(f"{url}/models/{model}/predict", json=body, headers=AUTH))
                    for _ in range(5)]
        await asyncio.sleep(0.02)
        changed = await http.post(f"{url}/models/{model}/{action}", json={} if action == "load" else None,
                                  headers=AUTH)
        assert changed.status_code == 200, changed.text
        return [response.status_code for response in await asyncio.gather(*requests)]

    async def run():
        async with httpx.AsyncClient(timeout=60) as http:
            assert (await http.post(f"{url}/models/b/load", json={}, headers=AUTH)).status_code == 200  # warm
            reloaded = await burst(http, "b", "load")
            added = await http.post(f"{url}/models/c/load", json={"bundle": str(root / "c")}, headers=AUTH)
            assert added.status_code == 200, added.text
            unloaded = await burst(http, "c", "unload")
            return reloaded, unloaded

    reloaded, unloaded = asyncio.run(asyncio.wait_for(run(), timeout=90))
    # answered by the version each was routed to, or a clear 503 (retired) / 404 (routed after the unload)
    assert set(reloaded) <= {200, 503} and set(unloaded) <= {200, 404, 503}, (reloaded, unloaded, log.read_text())
    assert reloaded.count(200) >= 1
    deadline = time.monotonic() + 10
    while _gauge(url, "ortpipe_queue_depth", "b") != 0:
        assert time.monotonic() < deadline, "the queue-depth gauge stayed up"
        time.sleep(0.1)


def test_racing_reloads_of_one_name_load_once_and_unchanged_sighup_reloads_nothing(bundles, tmp_path):
    """Case 7: concurrent loads of one name are 409 but one; SIGHUP skips unchanged bundles; memory holds."""
    config = tmp_path / "serve.toml"
    config.write_text(f'[models.a]\nbundle = "{bundles["bert"]}"\n\n[models.b]\nbundle = "{bundles["distilbert"]}"\n')
    with serving(tmp_path / "home", "--config", str(config), "--api-key", KEY, headers=AUTH) as (url, process, log):
        async def race():
            async with httpx.AsyncClient(timeout=60) as http:
                return await asyncio.gather(*(http.post(f"{url}/models/b/load", json={}, headers=AUTH)
                                              for _ in range(5)))

        statuses = sorted(r.status_code for r in asyncio.run(asyncio.wait_for(race(), timeout=60)))
        assert statuses.count(200) >= 1 and statuses.count(409) >= 1 and set(statuses) <= {200, 409}, statuses
        statuses: list = []
        # under traffic of every shape, the level at rest after 5, 10, 20 and 25 reloads and SIGHUPs. One level
        # moves by ±10 % either way (measured: 175, 169, 166, 166 MB after each of 4 × 10 reloads; clean-clone
        # CI runs read 157 → 174 and 162 → 179 between single levels): so the lower of the two late levels
        # against the higher of the two early ones. A leak raises both late levels; one high reading does not.
        levels = []
        for rounds in (range(5), range(5, 10), range(10, 20), range(20, 25)):
            with _traffic_running(url, statuses):
                _reload_and_hup(url, process, log, rounds=rounds)
            levels.append(_at_rest(process))
        first, last = max(levels[:2]), min(levels[2:])
        assert statuses and set(statuses) <= {200, 503}, sorted(set(map(str, statuses)))
        assert statuses.count(200) > len(statuses) // 2
        assert "reloaded" not in log.read_text()
        assert last <= first * 1.10, levels


@contextmanager
def _traffic_running(url: str, statuses: list):
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(url, stop, statuses))
    traffic.start()
    try:
        yield
    finally:
        stop.set()
        traffic.join(timeout=60)
        assert not traffic.is_alive(), "a request never ended"


def _reload_and_hup(url: str, process, log, rounds: range) -> None:
    """Per round: an HTTP reload of b, then a SIGHUP that finds b unchanged."""
    for round in rounds:
        assert httpx.post(f"{url}/models/b/load", json={}, headers=AUTH, timeout=60).status_code == 200
        process.send_signal(signal.SIGHUP)
        _wait_for(log, "SIGHUP: b unchanged", count=round + 1)  # (a load during a SIGHUP's would be a 409)


def _at_rest(process) -> float:
    """The server's RSS once the requests have ended and a retired version has been freed."""
    time.sleep(1.0)
    return rss_mb(process.pid)


def _traffic(url: str, stop: threading.Event, statuses: list) -> None:
    """Requests of every shape to model b until ``stop``: a sentence, 20 texts, long texts through windows.

    Each must end, with an answer or a clear refusal, within its deadline (x-timeout-ms) plus the client's slack.
    """
    bodies = [{"inputs": "a fine film"}, {"inputs": [f"text {i}" for i in range(20)]},
              {"inputs": [LONG] * 3, "window": 32}]
    with httpx.Client(timeout=30, headers={**AUTH, "x-timeout-ms": "10000"}) as client:
        while not stop.is_set() and len(statuses) < 2000:
            for body in bodies:
                try:
                    statuses.append(client.post(f"{url}/models/b/predict", json=body).status_code)
                except httpx.TimeoutException:
                    statuses.append("hung")


def _wait_for(log, text: str, count: int = 1, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while log.read_text().count(text) < count:
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)


def test_bounded_reads_and_short_echoes_on_the_management_routes(two_models):
    """Cases 5 and 13: /load bodies obey --max-body; odd paths are 422s that echo a short prefix only."""
    url, *_ = two_models
    huge = httpx.post(f"{url}/models/b/load", content=b'{"bundle": "' + b"a" * (8 << 20) + b'"}', headers=AUTH,
                      timeout=30)
    assert huge.status_code == 413 and "--max-body" in huge.json()["error"]
    for path in ("bun\x00dle", "/tmp/" + "x" * 5000, "x" * 5000):
        response = httpx.post(f"{url}/models/b/load", json={"bundle": path}, headers=AUTH, timeout=30)
        assert response.status_code in (403, 422), (path[:20], response.status_code, response.text[:300])
        assert len(response.text) < 1000
    long_name = httpx.post(f"{url}/models/{'n' * 3000}/predict", json={"inputs": "x"}, headers=AUTH, timeout=10)
    assert long_name.status_code == 404 and len(long_name.text) < 1000


def test_a_utf8_api_key_matches(bert_bundle, tmp_path):
    """Case 14: a non-ASCII key sent as UTF-8 is the key."""
    key = "clé-ünïcode-0123456789"
    with serving(tmp_path / "home", "--bundle", str(bert_bundle), "--api-key", key,
                 headers={"Authorization": f"Bearer {key}".encode()}) as (url, *_):
        right = httpx.post(f"{url}/predict", json={"inputs": "x"},
                           headers={"Authorization": f"Bearer {key}".encode()}, timeout=10)
        assert right.status_code == 200, right.text
        wrong = httpx.post(f"{url}/predict", json={"inputs": "x"},
                           headers={"Authorization": "Bearer cle-unicode-0123456789".encode()}, timeout=10)
        assert wrong.status_code == 401


@pytest.mark.parametrize("flags, env", [(["--api-key", ""], {}), (["--api-key", " "], {}),
                                        ([], {"ORTPIPE_API_KEYS": " , "})])
def test_a_blank_api_key_refuses_to_start(bert_bundle, tmp_path, flags, env):
    """Case 4: an empty key never turns authentication off."""
    done = subprocess.run([sys.executable, "-m", "ortpipe.cli", "serve", "--bundle", str(bert_bundle),
                           "--port", "1", *flags], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env, "ORTPIPE_HOME": str(tmp_path)})
    assert done.returncode != 0
    assert "empty key" in done.stderr and "Traceback" not in done.stderr


def test_a_window_count_past_the_limit_is_refused_before_tokenizing(bert_bundle, tmp_path):
    """Case 11: a 4 MB text with window 16 is refused from its words, not after tokenizing it whole."""
    with serving(tmp_path / "home", "--bundle", str(bert_bundle)) as (url, *_):
        text = "word " * (800_000)
        response = httpx.post(f"{url}/predict", json={"inputs": text, "window": 16}, timeout=60)
        assert response.status_code == 413
        assert "make at least" in response.json()["error"] and "--max-client-windows" in response.json()["error"]
        fits = httpx.post(f"{url}/predict", json={"inputs": "word " * 1000, "window": 16}, timeout=60)
        assert fits.status_code == 200, fits.text


def _connect(url: str):
    import socket

    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_by_server(sock) -> bool:
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_heads_are_bounded_in_size_and_time_and_connections_in_number(bert_bundle, tmp_path):
    """Case 5: a huge header line, half-sent heads and bodies, idle and surplus connections."""
    flags = ["--bundle", str(bert_bundle), "--head-timeout-s", "1", "--max-connections", "8"]
    with serving(tmp_path / "home", *flags) as (url, process, _):
        huge = _connect(url)
        huge.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        reply = huge.recv(65536)
        assert reply.startswith(b"HTTP/1.1 431"), reply[:80]
        slow_body = _connect(url)
        slow_body.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                          b"content-length: 100\r\n\r\n{\"inputs\": ")
        assert slow_body.recv(65536).startswith(b"HTTP/1.1 408")
        held = [_connect(url) for _ in range(20)]  # idle: nothing sent
        held[0].sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\n")  # and one half-sent head
        started = time.monotonic()
        assert all(_closed_by_server(sock) for sock in held)
        assert time.monotonic() - started < 5
        assert len(os.listdir(f"/proc/{process.pid}/fd")) < 64
        assert httpx.post(f"{url}/predict", json={"inputs": "still serving"}, timeout=10).status_code == 200


def test_docs_stay_open_with_keys_and_a_wide_server_without_one_warns(bert_bundle, tmp_path):
    """Issue 30: /docs with keys on (unless --private-docs), and a warning when the server listens beyond
    loopback without a key."""
    flags = ["--model", f"m={bert_bundle}", "--api-key", KEY]
    with serving(tmp_path / "open", *flags, headers=AUTH) as (url, _, _log):
        page = httpx.get(f"{url}/docs", timeout=10)
        assert page.status_code == 200 and "swagger" in page.text.lower()
        script = next(part.split('"')[0] for part in page.text.split('src="')[1:] if "swagger-ui-bundle" in part)
        assert httpx.get(url + script.removeprefix(url), timeout=10).status_code == 200
        assert "/models/{name}/predict" in httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"]
        assert httpx.post(f"{url}/models/m/predict", json={"inputs": "x"}, timeout=10).status_code == 401
        # issue 30, item 3: a second model through InferenceClient, at its /predict URL (what docs/serving.md shows)
        hub = pytest.importorskip("huggingface_hub")
        found = hub.InferenceClient(model=f"{url}/models/m/predict", token=KEY, timeout=30).text_classification("x")
        expected = httpx.post(f"{url}/models/m/predict", json={"inputs": "x"}, headers=AUTH, timeout=10).json()
        assert found[0].label == expected[0]["label"]
    with serving(tmp_path / "private", *flags, "--private-docs", headers=AUTH) as (url, _, _log):
        assert httpx.get(f"{url}/docs", timeout=10).status_code == 401
        assert httpx.get(f"{url}/openapi.json", timeout=10).status_code == 401
    with serving(tmp_path / "wide", "--bundle", str(bert_bundle), "--host", "0.0.0.0") as (url, _, log):
        assert "without an API key" in log.read_text() and "--api-key" in log.read_text()


def test_the_access_log_names_each_request_and_401s_are_counted(bert_bundle, tmp_path):
    """Issue 30, item 11: the server logged nothing for requests, reloads or shutdown; 401s were not counted."""
    with serving(tmp_path / "on", "--model", f"m={bert_bundle}", "--api-key", KEY, headers=AUTH) as (url, process, log):
        response = httpx.post(f"{url}/predict", json={"inputs": "x"}, headers={**AUTH, "x-request-id": "r-123"},
                              timeout=10)
        assert response.status_code == 200
        assert httpx.post(f"{url}/predict", json={"inputs": "x"}, timeout=10).status_code == 401
        assert httpx.post(f"{url}/models/nope/unload", headers=AUTH, timeout=10).status_code == 404
        metrics = httpx.get(f"{url}/metrics", headers=AUTH, timeout=10).text
        assert 'ortpipe_rejections_total{model="",reason="unauthorized"} 1.0' in metrics
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        said = log.read_text()
    assert "predict model=m status=200" in said and "id=r-123" in said
    assert "unload model=nope status=404" in said and "draining" in said
    with serving(tmp_path / "off", "--bundle", str(bert_bundle), "--no-access-log") as (url, _, log):
        assert httpx.post(f"{url}/predict", json={"inputs": "x"}, timeout=10).status_code == 200
        assert "predict model=" not in log.read_text()
