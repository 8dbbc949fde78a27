"""The ASGI plumbing of ``/predict``: bounded body reads, JSON, a watch on the client, and the fast path.

Pure ASGI (no FastAPI) so that the hot route pays no routing or dependency solving, and so that every
route that reads a body reads it the same bounded way.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ortpipe.serve.errors import ClientGone
from ortpipe.serve.protocol import RequestError

PREDICT_ROUTES = ("/predict", "/", "/invocations")


@dataclass(frozen=True)
class Route:
    """How a kind of prediction route answers: its name in the metrics, its answer, its refusals' body.

    ``respond(predictor, body, timeout header, timings, guard)`` is awaited for the payload;
    ``refuse(status, {error, error_type})`` gives a refusal's status and body in that route's protocol.
    """

    name: str
    respond: Callable[..., Awaitable[Any]]
    refuse: Callable[[int, dict], tuple[int, dict]] = lambda status, payload: (status, payload)
WATCH_AFTER_S = 0.005  # a queued request's connection is watched for a departure from then on


async def read_body(receive, declared: str | None, limit: int, part_timeout_s: float = 10.0) -> bytes:
    """The request body from ASGI ``receive``; 413 past ``limit`` (``declared``: its Content-Length), 408 when
    ``part_timeout_s`` pass between two parts of it."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "validation", f"the body has {declared} bytes; the limit is {limit} (--max-body)")
    body = bytearray()
    while True:
        message = await _within(receive(), part_timeout_s)
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body += message.get("body", b"")
        if len(body) > limit:
            raise RequestError(413, "validation", f"the body is over the limit of {limit} bytes (--max-body)")
        if not message.get("more_body", False):
            return bytes(body)


async def _within(waiting, seconds: float):
    """``await waiting``, or a 408 after ``seconds`` (a timer that cancels this task: no task per body part)."""
    task, expired = asyncio.current_task(), []

    def expire() -> None:
        expired.append(True)
        task.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await waiting
    except asyncio.CancelledError:
        if not expired:
            raise
        task.uncancel()
        raise RequestError(408, "validation", f"the body stopped arriving for {seconds:g} s "
                                              "(--head-timeout-s)") from None
    finally:
        timer.cancel()


def parse_json(body: bytes):
    try:
        return json.loads(body)
    except RecursionError:  # {"inputs": [[[[… thousands of levels: Python's parser gives up
        raise RequestError(400, "validation", "the body is nested too deeply to be a /predict request") from None
    except UnicodeDecodeError as exc:
        raise RequestError(400, "validation", f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise RequestError(400, "validation", f"the body is not valid JSON: {exc}") from None


async def unless_disconnected(receive, work):
    """Await ``work``; if the client disconnects first (ASGI ``receive``), cancel it and raise :class:`ClientGone`.

    The connection is watched from :data:`WATCH_AFTER_S` on: most requests are answered sooner and never pay
    for a watcher task, and a text queued that briefly would be running by the time a departure was seen.
    """
    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    loop, waiting = asyncio.get_running_loop(), asyncio.current_task()
    watchers: list[asyncio.Task] = []
    finished = False

    def on_disconnect(watcher: asyncio.Task) -> None:
        if not finished and not watcher.cancelled():
            waiting.cancel()

    def watch() -> None:
        watcher = loop.create_task(disconnected())
        watcher.add_done_callback(on_disconnect)
        watchers.append(watcher)

    timer = loop.call_later(WATCH_AFTER_S, watch)
    try:
        return await work
    except asyncio.CancelledError:
        if watchers and watchers[0].done() and not watchers[0].cancelled():  # cancelled because the client left
            waiting.uncancel()
            raise ClientGone() from None
        raise
    finally:
        finished = True
        timer.cancel()
        for watcher in watchers:
            watcher.cancel()


def model_in(path: str) -> str | None:
    """``NAME`` of a ``/models/NAME/predict`` path (None for any other path)."""
    parts = path.split("/")
    if len(parts) == 4 and parts[0] == "" and parts[1] == "models" and parts[3] == "predict" and parts[2]:
        return parts[2]
    return None


def json_bytes(payload) -> bytes:
    """JSON as Starlette's ``JSONResponse`` writes it."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class PredictFastPath:
    """Pure ASGI in front of FastAPI for ``POST /predict`` (and ``/``, ``/invocations``).

    The same ``answer`` as the FastAPI route, without FastAPI's routing, request object and
    dependency solving (profiled here: about a third of the app's own time per request, which
    counts at concurrency 1). Anything else (or the app mounted under a prefix) goes on to FastAPI,
    whose route for these paths stays, for the OpenAPI schema and ``/docs``. ``ortpipe serve`` puts
    it in front of the whole FastAPI app (``app.state.front``, behind the key check), so predictions
    skip FastAPI's own layers too; inside the app, as a middleware, it serves Ray Serve and tests.
    """

    def __init__(self, app, answer):
        self.app, self.answer = app, answer

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        model = model_in(path)
        if (scope["type"] != "http" or scope["method"] != "POST" or (path not in PREDICT_ROUTES and model is None)
                or scope.get("root_path")):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        status, body, extra = await self.answer(receive, headers.get, model)
        raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"),
                       *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra)]
        try:
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": body})
        except OSError:  # the client is gone; its request was accounted for (499)
            pass
