"""The HTTP app: ``create_app(clf)`` returns an ASGI app (FastAPI) serving a loaded classifier.

    from ortpipe.runtime import TextClassifier
    from ortpipe.serve import ServeConfig, create_app

    app = create_app(TextClassifier.load(), ServeConfig(max_queue=1024))   # mount it, or: ortpipe serve

Routes: ``POST /predict`` (also ``/`` and ``/invocations``), ``GET /health``,
``/ready``, ``/info``, ``/metrics`` and ``/docs`` (Swagger UI, its files served
by the app itself). Every answer
carries ``x-request-id`` and TEI's ``x-queue-time``, ``x-tokenization-time``
and ``x-inference-time`` (milliseconds); every refusal is a JSON
``{"error", "error_type"}`` with the status of :mod:`ortpipe.serve.protocol`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from ortpipe.runtime.classifier import TextClassifier
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.postprocess import apply_function
from ortpipe.runtime.predict import top_labels
from ortpipe.serve.batcher import Batcher, Expired, Overloaded
from ortpipe.serve.config import ServeConfig
from ortpipe.serve.metrics import ServerMetrics
from ortpipe.serve.protocol import (ERROR_SCHEMA, PREDICT_BODY_SCHEMA, PredictRequest, RequestError, invalid,
                                   parse_predict)
from ortpipe.runtime.windows import WindowedTexts, attach_windows, split_texts

PREDICT_ROUTES = ("/predict", "/", "/invocations")
TIMEOUT_HEADER = "x-timeout-ms"
INLINE_TOKENIZE = 8  # requests with more texts are tokenized in a worker thread
INLINE_CHARS = 16_384  # and so are requests with more characters (a long document takes milliseconds)
WATCH_AFTER_S = 0.005  # a queued request's connection is watched for a departure from then on


class _ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _read_body(receive, declared: str | None, limit: int) -> bytes:
    """The request body from ASGI ``receive``; 413 past ``limit`` (``declared``: its Content-Length)."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "validation", f"the body has {declared} bytes; the limit is {limit} (--max-body)")
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        body += message.get("body", b"")
        if len(body) > limit:
            raise RequestError(413, "validation", f"the body is over the limit of {limit} bytes (--max-body)")
        if not message.get("more_body", False):
            return bytes(body)


def _parse_json(body: bytes):
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "validation", f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise RequestError(400, "validation", f"the body is not valid JSON: {exc}") from None


def _deadline(raw: str | None, config: ServeConfig) -> float:
    """When a request's texts expire: now + ``config.timeout_ms``, or the ``x-timeout-ms`` header's value."""
    timeout_ms = config.timeout_ms
    if raw is not None:
        try:
            timeout_ms = float(raw)
        except ValueError:
            raise invalid(f"header {TIMEOUT_HEADER} must be a number of milliseconds, got {raw!r}") from None
    return time.perf_counter() + timeout_ms / 1000.0


async def _unless_disconnected(receive, work):
    """Await ``work``; if the client disconnects first (ASGI ``receive``), cancel it and raise :class:`_ClientGone`.

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
            raise _ClientGone() from None
        raise
    finally:
        finished = True
        timer.cancel()
        for watcher in watchers:
            watcher.cancel()


def _json_bytes(payload) -> bytes:
    """JSON as Starlette's ``JSONResponse`` writes it."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class PredictFastPath:
    """Pure ASGI in front of FastAPI for ``POST /predict`` (and ``/``, ``/invocations``).

    The same ``answer`` as the FastAPI route, without FastAPI's routing, request object and
    dependency solving (profiled here: about a third of the app's own time per request, which
    counts at concurrency 1). Anything else (or the app mounted under a prefix) goes on to FastAPI,
    whose route for these paths stays, for the OpenAPI schema and ``/docs``.
    """

    def __init__(self, app, answer):
        self.app, self.answer = app, answer

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PREDICT_ROUTES
                or scope.get("root_path")):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        status, body, extra = await self.answer(receive, headers.get)
        raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"),
                       *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra)]
        try:
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": body})
        except OSError:  # the client is gone; its request was accounted for (499)
            pass


def single_thread_model(clf: TextClassifier, concurrent_batches: int) -> OnnxModel | None:
    """A one-thread session of ``clf``'s variant for batches that run side by side; None: ``clf.model`` serves all.

    A lone batch is fastest on every core (ONNX Runtime's intra-op threads), but two batches at once each
    on one thread beat two that share the cores' threads: measured on 2 cores at 64 clients, 81-83 % of
    in-process throughput against 67-70 %. So on the CPU a server running batches side by side keeps one
    more session, with one thread: about 30 MiB for the default int8 model, and with two calls'
    activations the server's 10-minute soak holds 285 MiB instead of 184.
    """
    threads = clf.model.session.get_session_options().intra_op_num_threads or os.cpu_count() or 1
    if concurrent_batches < 2 or clf.provider != "cpu" or threads == 1:
        return None
    return OnnxModel(clf.model.path, provider="cpu", threads=1, memory=clf.memory.requested)


def create_app(clf: TextClassifier, config: ServeConfig = ServeConfig(), batcher_factory=Batcher,
               request_id_header: bool = True) -> FastAPI:
    """An ASGI app serving ``clf`` with the limits of ``config``.

    ``batcher_factory`` makes the dynamic batcher: :class:`~ortpipe.serve.batcher.Batcher`, or
    anything built with its arguments that offers its ``submit``, ``depth``, ``start`` and ``stop``
    (Ray Serve's ``@serve.batch`` in :mod:`ortpipe.distributed.online`), and ``concurrent_batches``
    and ``alone`` to run batches side by side. ``request_id_header=False``
    leaves ``x-request-id`` to a proxy in front that sets it already (Ray Serve's).
    """
    config.check()
    manifest = clf.manifest
    try:
        clf.window_options(config.default_window)
    except InputError as exc:
        raise ValueError(f"--window {config.window}: {exc}") from None

    def run_model(encodings: list):
        encoded = clf.tokenizer.collate(encodings)
        return (clf.model if side_by_side is None or batcher.alone else side_by_side)(encoded)

    state = {"ready": False, "draining": False}
    metrics = ServerMetrics(queue_depth=lambda: batcher.depth, memory=lambda: clf.memory)
    batcher = batcher_factory(run_model, config.max_batch_size, config.max_batch_tokens, config.max_wait_ms,
                              config.max_queue, on_batch=metrics.batch,
                              on_dropped=lambda reason: metrics.dropped_texts.labels(reason).inc(),
                              concurrent_batches=config.concurrent_batches)
    side_by_side = single_thread_model(clf, getattr(batcher, "concurrent_batches", 1))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        await asyncio.to_thread(clf, "warm-up")  # the first ONNX Runtime call allocates; pay it before /ready
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()

    # FastAPIOffline: /docs with Swagger UI served from the package, not a CDN (it works without internet)
    app = FastAPIOffline(title="ortpipe", version=manifest.library_versions.get("ortpipe", "0"), lifespan=lifespan,
                         description=f"Text classification with {manifest.source_model} "
                                     f"({clf.variant}, {clf.provider}).")
    app.state.ortpipe = state

    async def answer(receive, header) -> tuple[int, bytes, list[tuple[str, str]]]:
        """One ``/predict`` request, from ASGI ``receive`` and ``header(name)``: (status, JSON body, headers)."""
        request_id = header("x-request-id") or uuid.uuid4().hex
        timings = {"x-queue-time": 0.0, "x-tokenization-time": 0.0, "x-inference-time": 0.0}
        try:
            if state["draining"]:
                raise RequestError(503, "unhealthy", "the server is shutting down and takes no new requests")
            body = _parse_json(await _read_body(receive, header("content-length"), config.max_body))
            parsed = parse_predict(body, manifest.problem_type, manifest.num_labels, config.max_client_batch,
                                   windowing=clf.window_options, default_window=config.default_window)
            deadline = _deadline(header(TIMEOUT_HEADER), config)
            started = time.perf_counter()
            encodings, split = await _tokenize(parsed)
            timings["x-tokenization-time"] = time.perf_counter() - started
            metrics.tokenize_seconds.observe(timings["x-tokenization-time"])
            logits, queued, inferred = await _unless_disconnected(receive, batcher.submit(encodings, deadline))
            timings["x-queue-time"], timings["x-inference-time"] = queued, inferred
            metrics.queue_seconds.observe(queued)
            status, payload, extra = 200, parsed.shape(_results(parsed, logits, split)), {}
        except RequestError as exc:
            status, payload, extra = exc.status, exc.body(), exc.headers
            metrics.rejections.labels({413: "too_large", 503: "draining"}.get(status, "invalid")).inc()
        except Overloaded as exc:
            status, payload, extra = 429, {"error": str(exc), "error_type": "overloaded"}, {"Retry-After": "1"}
            metrics.rejections.labels("overloaded").inc()
        except Expired as exc:
            status, payload, extra = 504, {"error": str(exc), "error_type": "timeout"}, {}
            metrics.rejections.labels("timeout").inc()
        except _ClientGone:  # its texts still queued are dropped unrun (ortpipe_dropped_texts)
            status, payload, extra = 499, {"error": "client disconnected", "error_type": "disconnected"}, {}
            metrics.rejections.labels("disconnected").inc()
        except Exception as exc:  # the model failed on this batch; the server goes on
            status, payload = 500, {"error": f"{type(exc).__name__}: {exc}", "error_type": "backend"}
            extra = {}
        metrics.requests.labels("predict", str(status)).inc()
        headers = [*([("x-request-id", request_id)] if request_id_header else []), *extra.items(),
                   *((name, f"{seconds * 1000:.3f}") for name, seconds in timings.items())]
        return status, _json_bytes(payload), headers

    async def _tokenize(parsed: PredictRequest) -> tuple[list, WindowedTexts | None]:
        """The request's encodings (or windows, with how many belong to each text), in a thread when large."""
        if parsed.windows is not None:
            work, args = split_texts, (clf.tokenizer, parsed.items, parsed.windows)
        else:
            work, args = clf.tokenizer.encode, (parsed.items, parsed.truncate, parsed.truncation_direction)
        chars = sum(sum(map(len, i)) if isinstance(i, tuple) else len(i) for i in parsed.items)
        try:
            if len(parsed.items) <= INLINE_TOKENIZE and chars <= INLINE_CHARS:  # a thread hop would cost more
                done = work(*args)
            else:
                done = await asyncio.to_thread(work, *args)
        except InputError as exc:
            raise invalid(str(exc).replace("input[", "inputs[", 1)
                          .replace("pass truncation=True", 'send "truncate": true')) from None
        if parsed.windows is None:
            if parsed.truncate:
                metrics.truncated_texts.inc(clf.tokenizer.truncated(done))
            return done, None
        if len(done.windows) > config.max_client_windows:
            raise RequestError(413, "validation", f"the request's texts make {len(done.windows)} windows of "
                                                  f"{parsed.windows.window} tokens; the limit is "
                                                  f"{config.max_client_windows} (--max-client-windows)")
        metrics.windows.inc(len(done.windows))
        return done.windows, done

    def _results(parsed: PredictRequest, logits, split: WindowedTexts | None) -> list:
        """Each text's labels (its windows' logits aggregated first), with its windows when asked for."""
        if split is None:
            return top_labels(apply_function(logits, parsed.function), clf.labels, parsed.top_k)
        per_text = split.aggregate(logits, parsed.windows.aggregate)
        results = top_labels(apply_function(per_text, parsed.function), clf.labels, parsed.top_k)
        if not parsed.windows.return_windows:
            return results
        details = split.details(apply_function(logits, parsed.function), clf.labels)
        return [attach_windows(result, own) for result, own in zip(results, details)]

    async def predict(request: Request) -> Response:
        status, body, headers = await answer(request.receive, request.headers.get)
        return Response(body, status_code=status, headers=dict(headers), media_type="application/json")

    error = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
    openapi = {"requestBody": {"required": True, "content": {"application/json": {"schema": PREDICT_BODY_SCHEMA}}},
               "responses": {str(code): {"description": why, **error} for code, why in (
                   (400, "the body is not JSON or not UTF-8"), (413, "too many inputs, windows or bytes"),
                   (422, "a field or text the model cannot take"), (429, "the queue is full (Retry-After)"),
                   (503, "the server is draining"), (504, "the request waited past its deadline"))}}
    for route in PREDICT_ROUTES:
        app.add_api_route(route, predict, methods=["POST"], summary="Classify texts (TEI-compatible)",
                          include_in_schema=route == "/predict", openapi_extra=openapi)
    app.add_middleware(PredictFastPath, answer=answer)

    @app.get("/health", summary="Alive")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Warmed up and not draining")
    async def ready():
        ok = state["ready"] and not state["draining"]
        return JSONResponse({"ready": ok, "draining": state["draining"]}, status_code=200 if ok else 503)

    @app.get("/info", summary="Bundle, variant, provider, labels and limits")
    async def info():
        return {"bundle": str(clf.bundle.path), "source_model": manifest.source_model, "variant": clf.variant,
                "provider": clf.provider, "labels": clf.labels, "problem_type": manifest.problem_type,
                "max_input_length": manifest.max_length, "batch_invariant": clf.batch_invariant,
                "window": {"recommended": manifest.window, "default": config.default_window,
                           "max_client_windows": config.max_client_windows},
                "limits": config.as_dict(), "memory": clf.memory.as_dict()}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


def start_draining(app: FastAPI) -> None:
    """From now on ``/ready`` is 503 and new predictions are refused with 503; queued work finishes."""
    app.state.ortpipe["draining"] = True
