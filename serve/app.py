"""The HTTP app: ``create_app(clf)`` returns an ASGI app (FastAPI) serving one loaded classifier, or several.

    from ortpipe.runtime import TextClassifier
    from ortpipe.serve import ServeConfig, create_app

    app = create_app(TextClassifier.load(), ServeConfig(max_queue=1024))   # mount it, or: ortpipe serve
    app = create_app({"sentiment": clf, "topic": other})                   # several models, one process

Routes: ``POST /predict`` (also ``/`` and ``/invocations``; a ``"model"`` field
picks the model, else the default one), ``POST /models/{name}/predict``,
``GET /models``, ``/models/{name}``, ``/health``, ``/ready``, ``/info``,
``/metrics`` and ``/docs`` (Swagger UI, its files served by the app itself).
Every answer
carries ``x-request-id`` and TEI's ``x-queue-time``, ``x-tokenization-time``
and ``x-inference-time`` (milliseconds); every refusal is a JSON
``{"error", "error_type"}`` with the status of :mod:`ortpipe.serve.protocol`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from ortpipe.runtime.classifier import TextClassifier
from ortpipe.runtime.errors import OrtpipeError
from ortpipe.serve.batcher import Batcher, Expired, Overloaded
from ortpipe.serve.config import ServeConfig
from ortpipe.serve.metrics import ServerMetrics
from ortpipe.serve.predictor import TIMEOUT_HEADER, Predictor, single_thread_model  # noqa: F401 (re-exported)
from ortpipe.serve.protocol import PREDICT_BODY_SCHEMA, RequestError, error_responses, invalid
from ortpipe.serve.scheduler import Scheduler
from ortpipe.serve.security import ApiKeyGuard, allowed_bundle

PREDICT_ROUTES = ("/predict", "/", "/invocations")
MODEL_PREDICT_ROUTE = "/models/{name}/predict"
NAME_PARAMETER = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": "a model's name (GET /models lists them)"}
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
    except RecursionError:  # {"inputs": [[[[… thousands of levels: Python's parser gives up
        raise RequestError(400, "validation", "the body is nested too deeply to be a /predict request") from None
    except UnicodeDecodeError as exc:
        raise RequestError(400, "validation", f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise RequestError(400, "validation", f"the body is not valid JSON: {exc}") from None


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


def _model_in(path: str) -> str | None:
    """``NAME`` of a ``/models/NAME/predict`` path (None for any other path)."""
    parts = path.split("/")
    if len(parts) == 4 and parts[0] == "" and parts[1] == "models" and parts[3] == "predict" and parts[2]:
        return parts[2]
    return None


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
        path = scope.get("path", "")
        model = _model_in(path)
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


def model_name_of(clf: TextClassifier) -> str:
    """A bundle's name when it is served alone: its folder's name."""
    return clf.bundle.path.name or "default"


def _as_models(models, config: ServeConfig) -> dict[str, tuple[TextClassifier, ServeConfig]]:
    if isinstance(models, TextClassifier):
        return {model_name_of(models): (models, config)}
    if not models:
        raise ValueError("create_app needs at least one model")
    return {name: value if isinstance(value, tuple) else (value, config) for name, value in models.items()}


def default_loader(path: str, name: str, old: TextClassifier | None) -> TextClassifier:
    """How ``POST /models/{name}/load`` loads a bundle when the server was given no loader: as the old version."""
    if old is None:
        return TextClassifier.load(path, shared_threads=True)
    return TextClassifier.load(path, provider=old.provider, memory=old.memory.requested,
                               shared_threads=getattr(old.model, "shared_threads", False))


def create_app(models: TextClassifier | Mapping[str, TextClassifier | tuple[TextClassifier, ServeConfig]],
               config: ServeConfig = ServeConfig(), batcher_factory: Callable[..., Any] = Batcher,
               request_id_header: bool = True, default_model: str | None = None, api_keys: Sequence[str] = (),
               public_metrics: bool = False, model_roots: Sequence[str] = (),
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
        model_roots: folders under which ``/load`` may read bundles (a model's own path always).
        loader: ``(path, name, old classifier or None) → TextClassifier`` for ``/load``.
    """
    config.check()
    served = _as_models(models, config)
    default_model = default_model or next(iter(served))
    if default_model not in served:
        raise ValueError(f"--default-model {default_model!r} is not among the models {sorted(served)}")
    metrics = ServerMetrics()
    scheduler = Scheduler(config.concurrent_batches) if batcher_factory is Batcher else None
    predictors = {name: Predictor(name, clf, own, metrics, batcher_factory, scheduler)
                  for name, (clf, own) in served.items()}
    state = {"draining": False}

    def find(name: str | None) -> Predictor:
        if name is None:
            return predictors[default_model]
        if not isinstance(name, str):
            raise invalid(f"'model' must be a model's name, one of {sorted(predictors)}; got {name!r}")
        if name not in predictors:
            raise RequestError(404, "not_found", f"no model {name!r} here; the models are {sorted(predictors)}")
        return predictors[name]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.loop = asyncio.get_running_loop()
        for predictor in predictors.values():
            await predictor.start()
        yield
        if app.state.retiring:  # old versions still answering what they held
            await asyncio.wait(set(app.state.retiring))
        for predictor in list(predictors.values()):
            await predictor.stop()
        if scheduler is not None:
            await scheduler.stop()

    first = predictors[default_model].clf
    # FastAPIOffline: /docs with Swagger UI served from the package, not a CDN (it works without internet)
    app = FastAPIOffline(title="ortpipe", version=first.manifest.library_versions.get("ortpipe", "0"),
                         lifespan=lifespan, description="Text classification with " + "; ".join(
                             f"{name}: {p.clf.manifest.source_model} ({p.clf.variant}, {p.clf.provider})"
                             for name, p in predictors.items()) + ".")
    app.state.ortpipe = state
    app.state.predictors = predictors

    async def answer(receive, header, model: str | None = None) -> tuple[int, bytes, list[tuple[str, str]]]:
        """One ``/predict`` request, from ASGI ``receive`` and ``header(name)``: (status, JSON body, headers).

        ``model``: the name in the path (``/models/{name}/predict``); else the body's ``model``; else the default.
        """
        request_id = header("x-request-id") or uuid.uuid4().hex
        timings = {"x-queue-time": 0.0, "x-tokenization-time": 0.0, "x-inference-time": 0.0}
        counted = metrics.unrouted
        try:
            if state["draining"]:
                raise RequestError(503, "unhealthy", "the server is shutting down and takes no new requests")
            body = _parse_json(await _read_body(receive, header("content-length"), config.max_body))
            if model is None and isinstance(body, dict):
                model = body.get("model")
            predictor = find(model)
            counted = predictor.metrics
            if isinstance(body, dict):
                body = {k: v for k, v in body.items() if k != "model"}
            payload = await predictor.predict(body, header(TIMEOUT_HEADER), timings,
                                              lambda work: _unless_disconnected(receive, work))
            status, extra = 200, {}
        except RequestError as exc:
            status, payload, extra = exc.status, exc.body(), exc.headers
            counted.rejections.labels({413: "too_large", 503: "draining", 404: "unknown_model"}
                                      .get(status, "invalid")).inc()
        except Overloaded as exc:
            status, payload, extra = 429, {"error": str(exc), "error_type": "overloaded"}, {"Retry-After": "1"}
            counted.rejections.labels("overloaded").inc()
        except Expired as exc:
            status, payload, extra = 504, {"error": str(exc), "error_type": "timeout"}, {}
            counted.rejections.labels("timeout").inc()
        except _ClientGone:  # its texts still queued are dropped unrun (ortpipe_dropped_texts)
            status, payload, extra = 499, {"error": "client disconnected", "error_type": "disconnected"}, {}
            counted.rejections.labels("disconnected").inc()
        except Exception as exc:  # the model failed on this batch; the server goes on
            status, payload = 500, {"error": f"{type(exc).__name__}: {exc}", "error_type": "backend"}
            extra = {}
        counted.requests.labels("predict", str(status)).inc()
        headers = [*([("x-request-id", request_id)] if request_id_header else []), *extra.items(),
                   *((name, f"{seconds * 1000:.3f}") for name, seconds in timings.items())]
        return status, _json_bytes(payload), headers

    async def predict(request: Request) -> Response:
        status, body, headers = await answer(request.receive, request.headers.get,
                                             request.path_params.get("name"))
        return Response(body, status_code=status, headers=dict(headers), media_type="application/json")

    body_schema = {**PREDICT_BODY_SCHEMA, "properties": {**PREDICT_BODY_SCHEMA["properties"], "model": {
        "type": "string", "description": f"which model answers (default {default_model!r}; see GET /models)"}}}
    openapi = {"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
               "responses": {"200": {"description": "per text, its labels with their scores, best first",
                                     "content": {"application/json": {"schema": {"type": "array"}}}},
                             **error_responses(
                                 (400, "the body is not JSON, not UTF-8, or nested too deeply"),
                                 (404, "no such model"), (413, "too many inputs, windows or bytes"),
                                 (422, "a field, header or text the model cannot take"),
                                 (429, "the queue is full (Retry-After)"), (499, "the client disconnected"),
                                 (500, "the model failed on this batch"), (503, "the server is draining"),
                                 (504, "the request waited past its deadline"))}}
    by_name = {**openapi, "parameters": [NAME_PARAMETER]}
    for route in (*PREDICT_ROUTES, MODEL_PREDICT_ROUTE):
        app.add_api_route(route, predict, methods=["POST"], summary="Classify texts (TEI-compatible)",
                          include_in_schema=route in ("/predict", MODEL_PREDICT_ROUTE),
                          openapi_extra=by_name if route == MODEL_PREDICT_ROUTE else openapi)
    app.add_middleware(PredictFastPath, answer=answer)

    @app.get("/health", summary="Alive")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Every model warmed up, and not draining")
    async def ready():
        ok = all(p.ready for p in predictors.values()) and not state["draining"]
        return JSONResponse({"ready": ok, "draining": state["draining"],
                             "models": {name: p.ready for name, p in predictors.items()}},
                            status_code=200 if ok else 503)

    @app.get("/info", summary="The default model's bundle, variant, provider, labels and limits")
    async def info():
        return {**predictors[default_model].info(), "default_model": default_model, "models": sorted(predictors)}

    @app.get("/models", summary="Every model: name, labels, variant, provider, state, limits")
    async def list_models():
        return {"default_model": default_model, "models": [p.summary() for p in predictors.values()]}

    @app.get("/models/{name}", summary="One model's /info", responses=error_responses((404, "no such model")))
    async def model_info(name: str):
        try:
            return find(name).info()
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    _add_model_management(app, predictors, metrics, config, batcher_factory, scheduler, api_keys, model_roots,
                          loader, lambda: default_model)
    if api_keys:
        app.add_middleware(ApiKeyGuard, keys=api_keys, public_metrics=public_metrics)  # outermost
        _document_keys(app, public_metrics)
    return app


def _document_keys(app: FastAPI, public_metrics: bool) -> None:
    """The OpenAPI schema says which routes need ``Authorization: Bearer`` and that they answer 401 without it."""
    plain = app.openapi
    open_paths = {"/health", *(("/metrics",) if public_metrics else ())}

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = plain()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http", "scheme": "bearer", "description": "a key the server was started with (--api-key)"}
        for path, operations in schema["paths"].items():
            if path in open_paths:
                continue
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}]
                operation.setdefault("responses", {}).update(error_responses((401, "no API key, or a wrong one")))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def _add_model_management(app, predictors: dict, metrics: ServerMetrics, config: ServeConfig, batcher_factory,
                          scheduler, api_keys, model_roots, loader, default_model) -> None:
    """``POST /models/{name}/load`` and ``/unload``: a new version loaded beside the old, probed, switched to."""
    lock = asyncio.Lock()
    started_with = {p.bundle_path for p in predictors.values()}
    retiring: set[asyncio.Task] = set()
    app.state.retiring = retiring

    def refuse_unless_allowed(trusted: bool = False) -> None:
        if not api_keys and not trusted:
            raise RequestError(403, "forbidden", "loading and unloading models over HTTP needs an API key: start "
                                                 "the server with --api-key (or ORTPIPE_API_KEYS)")
        if scheduler is None:
            raise RequestError(501, "unsupported", "loading models at run time is for the local engine")

    async def retire(old: Predictor) -> None:
        """Let the old version answer what it holds, then free it."""
        while old.batcher.depth:
            await asyncio.sleep(0.01)
        await old.stop()

    def retire_later(old: Predictor) -> None:
        task = asyncio.get_running_loop().create_task(retire(old))
        retiring.add(task)
        task.add_done_callback(retiring.discard)

    async def load(name: str, bundle: str | None, trusted: bool = False, limits: ServeConfig | None = None) -> dict:
        """Load ``bundle`` (None: the model's own path again) as ``name``; ``trusted``: from the operator (SIGHUP)."""
        refuse_unless_allowed(trusted)
        old = predictors.get(name)
        if bundle is None and old is None:
            raise RequestError(404, "not_found", f"no model {name!r} here to re-read; send {{\"bundle\": PATH}} to "
                                                 "load a new one")
        path = bundle if bundle is not None else old.bundle_path
        if not isinstance(path, str) or not path:
            raise invalid(f"'bundle' must be a bundle folder's path, got {path!r}")
        try:
            allowed = str(allowed_bundle(path, model_roots, own=started_with) if not trusted else Path(path).resolve())
        except PermissionError as exc:
            raise RequestError(403, "forbidden", str(exc)) from None
        async with lock:
            try:
                clf = await asyncio.to_thread(loader, allowed, name, old.clf if old else None)
                report = await asyncio.to_thread(clf.check)
            except OrtpipeError as exc:
                raise RequestError(422, "bundle", f"{allowed} was not loaded ({type(exc).__name__}: {exc}); "
                                                  f"{'the old version still serves' if old else 'nothing changed'}"
                                   ) from None
            if not report.passed:
                raise RequestError(422, "bundle", f"{allowed} failed its probe check here ({report.reason}); "
                                                  f"{'the old version still serves' if old else 'nothing changed'}")
            new = Predictor(name, clf, limits or (old.config if old else config), metrics, batcher_factory,
                            scheduler, bundle_path=allowed)
            await new.start()
            predictors[name] = new  # new requests go to the new version from here on
        if old is not None:
            retire_later(old)
        return {"model": name, "bundle": allowed, "variant": clf.variant, "replaced": old is not None,
                "probe": {"passed": report.passed, "agreement": report.agreement, "reason": report.reason}}

    async def unload(name: str, trusted: bool = False) -> dict:
        refuse_unless_allowed(trusted)
        if name not in predictors:
            raise RequestError(404, "not_found", f"no model {name!r} here; the models are {sorted(predictors)}")
        if name == default_model():
            raise RequestError(409, "conflict", f"{name!r} is the default model (/predict without a \"model\"); "
                                                "it cannot be unloaded")
        async with lock:
            old = predictors.pop(name)
        retire_later(old)
        return {"model": name, "unloaded": True}

    app.state.load_model, app.state.unload_model = load, unload

    async def answer(work) -> JSONResponse:
        try:
            return JSONResponse(await work)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)

    refusals = ((403, "no API key configured, or a bundle outside --model-root"), (404, "no such model"),
                (409, "the default model cannot be unloaded"), (501, "not on this engine"))

    @app.post("/models/{name}/load", summary="Load a model (or a new version of one) beside the old, then switch",
              responses=error_responses((400, "the body is not JSON"), *refusals,
                                        (422, "the bundle cannot be loaded or failed its probe check")),
              openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": {
                  "type": "object", "additionalProperties": False, "properties": {"bundle": {
                      "type": "string", "description": "a bundle folder (default: the model's own path again)"}}}}}}})
    async def load_route(name: str, request: Request):
        try:
            body = _parse_json(await request.body() or b"{}")
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        if not isinstance(body, dict) or set(body) - {"bundle"}:
            return JSONResponse(invalid("the body must be {} or {\"bundle\": PATH}").body(), status_code=422)
        return await answer(load(name, body.get("bundle")))

    @app.post("/models/{name}/unload", summary="Stop serving a model once it has answered what it holds",
              responses=error_responses(*refusals))
    async def unload_route(name: str):
        return await answer(unload(name))


def start_draining(app: FastAPI) -> None:
    """From now on ``/ready`` is 503 and new predictions are refused with 503; queued work finishes."""
    app.state.ortpipe["draining"] = True
