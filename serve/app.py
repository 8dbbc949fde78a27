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
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from ortpipe.runtime.classifier import TextClassifier
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.postprocess import apply_function
from ortpipe.runtime.predict import top_labels
from ortpipe.serve.batcher import Batcher, Expired, Overloaded
from ortpipe.serve.config import ServeConfig
from ortpipe.serve.metrics import ServerMetrics
from ortpipe.serve.protocol import RequestError, invalid, parse_predict

PREDICT_ROUTES = ("/predict", "/", "/invocations")
TIMEOUT_HEADER = "x-timeout-ms"
INLINE_TOKENIZE = 8  # requests with more texts are tokenized in a worker thread


class _ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "validation", f"the body has {declared} bytes; the limit is {limit} (--max-body)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, "validation", f"the body is over the limit of {limit} bytes (--max-body)")
    return bytes(body)


def _parse_json(body: bytes):
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "validation", f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise RequestError(400, "validation", f"the body is not valid JSON: {exc}") from None


def _deadline(request: Request, config: ServeConfig) -> float:
    raw = request.headers.get(TIMEOUT_HEADER)
    timeout_ms = config.timeout_ms
    if raw is not None:
        try:
            timeout_ms = float(raw)
        except ValueError:
            raise invalid(f"header {TIMEOUT_HEADER} must be a number of milliseconds, got {raw!r}") from None
    return time.perf_counter() + timeout_ms / 1000.0


async def _unless_disconnected(request: Request, work):
    """Await ``work``; if the client disconnects first, cancel it and raise :class:`_ClientGone`."""
    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    raise _ClientGone()


def create_app(clf: TextClassifier, config: ServeConfig = ServeConfig(), batcher_factory=Batcher,
               request_id_header: bool = True) -> FastAPI:
    """An ASGI app serving ``clf`` with the limits of ``config``.

    ``batcher_factory`` makes the dynamic batcher: :class:`~ortpipe.serve.batcher.Batcher`, or
    anything built with its arguments that offers its ``submit``, ``depth``, ``start`` and ``stop``
    (Ray Serve's ``@serve.batch`` in :mod:`ortpipe.distributed.online`). ``request_id_header=False``
    leaves ``x-request-id`` to a proxy in front that sets it already (Ray Serve's).
    """
    config.check()
    manifest = clf.manifest

    def run_model(encodings: list):
        return clf.model(clf.tokenizer.collate(encodings))

    state = {"ready": False, "draining": False}
    metrics = ServerMetrics(queue_depth=lambda: batcher.depth, memory=lambda: clf.memory)
    batcher = batcher_factory(run_model, config.max_batch_size, config.max_batch_tokens, config.max_wait_ms,
                              config.max_queue, on_batch=metrics.batch,
                              on_dropped=lambda reason: metrics.dropped_texts.labels(reason).inc())

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

    async def predict(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        timings = {"x-queue-time": 0.0, "x-tokenization-time": 0.0, "x-inference-time": 0.0}
        try:
            if state["draining"]:
                raise RequestError(503, "unhealthy", "the server is shutting down and takes no new requests")
            body = _parse_json(await _read_body(request, config.max_body))
            parsed = parse_predict(body, manifest.problem_type, manifest.num_labels, config.max_client_batch)
            deadline = _deadline(request, config)
            started = time.perf_counter()
            options = (parsed.items, parsed.truncate, parsed.truncation_direction)
            try:
                if len(parsed.items) <= INLINE_TOKENIZE:  # microseconds: a thread hop would cost more
                    encodings = clf.tokenizer.encode(*options)
                else:
                    encodings = await asyncio.to_thread(clf.tokenizer.encode, *options)
            except InputError as exc:
                raise invalid(str(exc).replace("input[", "inputs[", 1)
                              .replace("pass truncation=True", 'send "truncate": true')) from None
            timings["x-tokenization-time"] = time.perf_counter() - started
            metrics.tokenize_seconds.observe(timings["x-tokenization-time"])
            logits, queued, inferred = await _unless_disconnected(request, batcher.submit(encodings, deadline))
            timings["x-queue-time"], timings["x-inference-time"] = queued, inferred
            metrics.queue_seconds.observe(queued)
            results = top_labels(apply_function(logits, parsed.function), clf.labels, parsed.top_k)
            status, payload, extra = 200, parsed.shape(results), {}
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
        headers = {**({"x-request-id": request_id} if request_id_header else {}), **extra,
                   **{name: f"{seconds * 1000:.3f}" for name, seconds in timings.items()}}
        return JSONResponse(payload, status_code=status, headers=headers)

    for route in PREDICT_ROUTES:
        app.add_api_route(route, predict, methods=["POST"], summary="Classify texts (TEI-compatible)",
                          include_in_schema=route == "/predict")

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
                "limits": config.as_dict(), "memory": clf.memory.as_dict()}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


def start_draining(app: FastAPI) -> None:
    """From now on ``/ready`` is 503 and new predictions are refused with 503; queued work finishes."""
    app.state.ortpipe["draining"] = True
