"""The HTTP app: ``create_app(clf)`` returns an ASGI app (FastAPI) serving one loaded classifier, or several.

    from ortpipe.runtime import TextClassifier
    from ortpipe.serve import ServeConfig, create_app

    app = create_app(TextClassifier.load(), ServeConfig(max_queue=1024))   # mount it, or: ortpipe serve
    app = create_app({"sentiment": clf, "topic": other})                   # several models, one process

Routes: ``POST /predict`` (also ``/`` and ``/invocations``; a ``"model"`` field
picks the model, else the default one), ``POST /models/{name}/predict``,
``GET /models``, ``/models/{name}``, ``/health``, ``/ready``, ``/info``,
``/metrics`` and ``/docs`` (Swagger UI, its files served by the app itself).
Every answer carries ``x-request-id`` and TEI's ``x-queue-time``,
``x-tokenization-time`` and ``x-inference-time`` (milliseconds); every refusal
is a JSON ``{"error", "error_type"}`` with the status its error class declares
(:mod:`ortpipe.serve.errors`). The served models are one
:class:`~ortpipe.serve.served.ServedModels` on ``app.state.served``; the
handlers here are plain functions that read it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from ortpipe.runtime.classifier import TextClassifier
from ortpipe.serve import classify_api
from ortpipe.serve.asgi import PREDICT_ROUTES, PredictFastPath, Route, json_bytes, parse_json, read_body, \
    unless_disconnected
from ortpipe.serve.batcher import Batcher
from ortpipe.serve.config import ServeConfig
from ortpipe.serve.errors import ServeError
from ortpipe.serve.management import add_management_routes, default_loader
from ortpipe.serve.metrics import ServerMetrics
from ortpipe.serve.predictor import TIMEOUT_HEADER, Predictor, concurrent_batches_for, single_thread_model  # noqa: F401
from ortpipe.serve.protocol import PAIR_WARNING, PREDICT_BODY_SCHEMA, RequestError, error_responses, reads_as_pair
from ortpipe.serve.scheduler import Scheduler
from ortpipe.serve.security import ApiKeyGuard, document_keys
from ortpipe.serve.served import ServedModels, bundle_digest
from ortpipe.serve.zero_shot_protocol import ZERO_SHOT_ANSWER, ZERO_SHOT_OPTIONS

MODEL_PREDICT_ROUTES = ("/models/{name}/predict",)
# one line per request (ortpipe serve turns it on; --no-access-log leaves it off)
ACCESS_LOG = logging.getLogger("ortpipe.access")
NAME_PARAMETER = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": "a model's name (GET /models lists them)"}
PREDICT_STATUSES = (400, 404, 408, 413, 422, 429, 499, 500, 503, 504)


@dataclass(frozen=True)
class ServerState:
    """What the handlers read from ``app.state.ortpipe``: the models, the metrics and the server's settings."""

    served: ServedModels
    metrics: ServerMetrics
    config: ServeConfig
    scheduler: Scheduler | None
    request_id_header: bool


def model_name_of(clf: TextClassifier) -> str:
    """A bundle's name when it is served alone: its folder's name."""
    return clf.bundle.path.name or "default"


def _as_models(models, config: ServeConfig) -> dict[str, tuple[TextClassifier, ServeConfig]]:
    if isinstance(models, TextClassifier):
        return {model_name_of(models): (models, config)}
    if not models:
        raise ValueError("create_app needs at least one model")
    return {name: value if isinstance(value, tuple) else (value, config) for name, value in models.items()}


PREDICT = Route("predict", lambda predictor, body, *rest: predictor.predict(body, *rest))
CLASSIFY = Route("classify", classify_api.respond, classify_api.classify_error)


async def answer(server: ServerState, receive, header, model: str | None = None,
                 route: Route = PREDICT) -> tuple[int, bytes, list]:
    """One ``/predict`` request (or ``route``'s), from ASGI ``receive`` and ``header(name)``: (status, JSON body,
    headers).

    ``model``: the name in the path (``/models/{name}/predict``); else the body's ``model``; else the default.
    """
    request_id = header("x-request-id") or uuid.uuid4().hex
    started = time.perf_counter()
    timings = {"x-queue-time": 0.0, "x-tokenization-time": 0.0, "x-inference-time": 0.0}
    counted, served = server.metrics.unrouted, server.served
    try:
        if served.draining:
            raise RequestError(503, "unhealthy", "the server is shutting down and takes no new requests")
        config = server.config
        body = parse_json(await read_body(receive, header("content-length"), config.max_body, config.head_timeout_s))
        if model is None and isinstance(body, dict):
            model = body.get("model")
        predictor = served.find(model)
        counted = predictor.metrics
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "model"}
        payload = await route.respond(predictor, body, header(TIMEOUT_HEADER), timings,
                                      partial(unless_disconnected, receive))
        status, extra = 200, ({"Warning": PAIR_WARNING} if route is PREDICT and reads_as_pair(body) else {})
    except ServeError as exc:  # each refusal's status, body and headers are its class's
        status, payload, extra = exc.status, exc.body(), exc.headers
        counted.rejections.labels(exc.reason).inc()
    except Exception as exc:  # the model failed on this batch; the server goes on
        status, payload, extra = 500, {"error": f"{type(exc).__name__}: {exc}", "error_type": "backend"}, {}
    if status != 200:
        status, payload = route.refuse(status, payload)
    counted.requests.labels(route.name, str(status)).inc()
    if ACCESS_LOG.isEnabledFor(logging.INFO):
        ACCESS_LOG.info(route.name + " model=%s status=%d ms=%.1f id=%s", counted.name or "-", status,
                        (time.perf_counter() - started) * 1000, request_id)
    headers = [*([("x-request-id", request_id)] if server.request_id_header else []), *extra.items(),
               *((name, f"{seconds * 1000:.3f}") for name, seconds in timings.items())]
    return status, json_bytes(payload), headers


def _server(request: Request) -> ServerState:
    return request.app.state.ortpipe


async def predict(request: Request) -> Response:
    status, body, headers = await answer(_server(request), request.receive, request.headers.get,
                                         request.path_params.get("name"))
    return Response(body, status_code=status, headers=dict(headers), media_type="application/json")


async def classify(request: Request) -> Response:
    status, body, headers = await answer(_server(request), request.receive, request.headers.get, route=CLASSIFY)
    return Response(body, status_code=status, headers=dict(headers), media_type="application/json")


async def health():
    return {"status": "ok"}


async def ready(request: Request):
    served = _server(request).served
    ok = all(p.ready for p in served.predictors.values()) and not served.draining
    return JSONResponse({"ready": ok, "draining": served.draining,
                         "models": {name: p.ready for name, p in served.predictors.items()}},
                        status_code=200 if ok else 503)


async def info(request: Request):
    served = _server(request).served
    return {**served.predictors[served.default].info(), "default_model": served.default,
            "models": sorted(served.predictors)}


async def list_models(request: Request):
    served = _server(request).served
    return {"default_model": served.default, "models": [p.summary() for p in served.predictors.values()]}


async def model_info(request: Request, name: str):
    try:
        return _server(request).served.find(name).info()
    except ServeError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)


async def prometheus(request: Request):
    metrics = _server(request).metrics
    return Response(metrics.render(), media_type=metrics.content_type)


def _add_routes(app: FastAPI, default_model: str) -> None:
    properties = PREDICT_BODY_SCHEMA["properties"]
    parameters = {**properties["parameters"], "properties": {**properties["parameters"]["properties"],
                                                             **ZERO_SHOT_OPTIONS}}
    body_schema = {**PREDICT_BODY_SCHEMA, "properties": {**properties, **ZERO_SHOT_OPTIONS, "parameters": parameters,
                                                         "model": {"type": "string", "description": (
        f"which model answers (default {default_model!r}; see GET /models)")}}}
    answers = {"oneOf": [{"type": "array", "description": "per text, its labels with their scores, best first"},
                         ZERO_SHOT_ANSWER, {"type": "array", "items": ZERO_SHOT_ANSWER}]}
    openapi = {"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
               "responses": {"200": {"description": "per text, its labels with their scores, best first; with "
                                                    "candidate_labels, zero-shot's {sequence, labels, scores}",
                                     "content": {"application/json": {"schema": answers}}},
                             **error_responses(*PREDICT_STATUSES)}}
    by_name = {**openapi, "parameters": [NAME_PARAMETER]}
    for route in (*PREDICT_ROUTES, *MODEL_PREDICT_ROUTES):
        app.add_api_route(route, predict, methods=["POST"], summary="Classify texts (TEI-compatible)",
                          include_in_schema=route in ("/predict", *MODEL_PREDICT_ROUTES),
                          openapi_extra=by_name if route in MODEL_PREDICT_ROUTES else openapi)
    for route in classify_api.CLASSIFY_ROUTES:
        app.add_api_route(route, classify, methods=["POST"], openapi_extra=classify_api.CLASSIFY_OPENAPI,
                          summary="Classify texts (vLLM's classification API)")
    app.add_api_route("/health", health, methods=["GET"], summary="Alive")
    app.add_api_route("/ready", ready, methods=["GET"], summary="Every model warmed up, and not draining")
    app.add_api_route("/info", info, methods=["GET"],
                      summary="The default model's bundle, variant, provider, backend, labels and limits")
    app.add_api_route("/models", list_models, methods=["GET"],
                      summary="Every model: name, labels, variant, provider, state, limits")
    app.add_api_route("/models/{name}", model_info, methods=["GET"], summary="One model's /info",
                      responses=error_responses(404))
    app.add_api_route("/metrics", prometheus, methods=["GET"], summary="Prometheus metrics", response_class=Response,
                      responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                       "description": "Prometheus text format"}})


@asynccontextmanager
async def _lifespan(app: FastAPI):
    server: ServerState = app.state.ortpipe
    app.state.loop = asyncio.get_running_loop()
    await server.served.start()
    yield
    await server.served.stop()
    if server.scheduler is not None:
        await server.scheduler.stop()


def create_app(models: TextClassifier | Mapping[str, TextClassifier | tuple[TextClassifier, ServeConfig]],
               config: ServeConfig = ServeConfig(), batcher_factory: Callable[..., Any] = Batcher,
               request_id_header: bool = True, default_model: str | None = None, api_keys: Sequence[str] = (),
               public_metrics: bool = False, model_roots: Sequence[str] = (), private_docs: bool = False,
               loader: Callable[[str, str, TextClassifier | None], TextClassifier] = default_loader) -> FastAPI:
    """An ASGI app serving one classifier, or several, with the limits of ``config``.

    Args:
        models: a :class:`TextClassifier`; or ``{name: clf}``, or ``{name: (clf, its own ServeConfig)}``
            for per-model limits. Every model's batches run on one scheduler's workers
            (``config.concurrent_batches`` of them), in turn.
        config: the server's settings, and every model's limits unless it has its own.
        batcher_factory: makes each model's dynamic batcher: :class:`~ortpipe.serve.batcher.Batcher`, or
            anything built with its arguments that offers its ``submit``, ``depth``, ``start`` and ``stop``
            (Ray Serve's ``@serve.batch`` in :mod:`ortpipe.distributed.online`), and ``concurrent_batches``
            and ``alone`` to run batches side by side.
        request_id_header: False leaves ``x-request-id`` to a proxy in front that sets it already (Ray Serve's).
        default_model: where ``/predict`` without a ``model`` goes (default: the first).
        api_keys: with any, every route but ``/health`` needs ``Authorization: Bearer KEY``
            (:mod:`ortpipe.serve.security`), and ``POST /models/{name}/load`` and ``/unload`` exist.
        public_metrics: ``/metrics`` without a key.
        private_docs: ``/docs`` and ``/openapi.json`` need a key too (by default they are open: the schema
            holds no secret, and a browser cannot send the key to ``/docs``).
        model_roots: folders under which ``/load`` may read bundles (a model's own path always).
        loader: ``(path, name, old classifier or None) → TextClassifier`` for ``/load``.
    """
    config.check()
    given = _as_models(models, config)
    workers = concurrent_batches_for(config.concurrent_batches, [clf for clf, _ in given.values()])
    config = replace(config, concurrent_batches=workers)
    metrics = ServerMetrics()
    scheduler = Scheduler(config.concurrent_batches) if batcher_factory is Batcher else None

    def make(name, clf, limits, bundle_path=None, digest=None) -> Predictor:
        path = bundle_path or str(clf.bundle.path)
        limits = replace(limits, concurrent_batches=workers) if limits else config  # one scheduler: its workers
        return Predictor(name, clf, limits, metrics, batcher_factory, scheduler, bundle_path=path,
                         bundle_digest=digest if digest is not None else bundle_digest(path))

    served = ServedModels({name: make(name, clf, own) for name, (clf, own) in given.items()},
                          default_model or next(iter(given)), make, loader, model_roots, keys_set=bool(api_keys),
                          can_load=scheduler is not None)
    first = served.predictors[served.default].clf
    # FastAPIOffline: /docs with Swagger UI served from the package, not a CDN (it works without internet)
    app = FastAPIOffline(title="ortpipe", version=first.manifest.library_versions.get("ortpipe", "0"),
                         lifespan=_lifespan, description="Text classification with " + "; ".join(
                             f"{name}: {p.clf.manifest.source_model} ({p.clf.variant}, {p.clf.provider})"
                             for name, p in served.predictors.items()) + ".")
    app.state.ortpipe = ServerState(served, metrics, config, scheduler, request_id_header)
    app.state.served = served
    _add_routes(app, served.default)
    app.add_middleware(PredictFastPath, answer=partial(answer, app.state.ortpipe))
    add_management_routes(app)
    guard = {"keys": api_keys, "public_metrics": public_metrics, "private_docs": private_docs,
             "on_refused": lambda: metrics.unrouted.rejections.labels("unauthorized").inc()}
    if api_keys:
        app.add_middleware(ApiKeyGuard, **guard)  # outermost
        document_keys(app, public_metrics)
    app.state.front = _front(app, guard if api_keys else None)
    return app


def _front(app: FastAPI, guard: dict | None):
    """What ``ortpipe serve`` hands uvicorn: the prediction fast path (behind the key check, with ``guard``'s
    keys) in front of the whole app, so predictions skip FastAPI's own telemetry, body-limit and error layers
    (0.23 ms of p50 and 2 % of the CPU at one client, 2 cores)."""
    fast = PredictFastPath(app, answer=partial(answer, app.state.ortpipe))
    return ApiKeyGuard(fast, **guard) if guard else fast


def start_draining(app: FastAPI) -> None:
    """From now on ``/ready`` is 503 and new predictions are refused with 503; queued work finishes."""
    app.state.served.draining = True
