"""``POST /models/{name}/load`` and ``/unload``: plain handlers over the app's :class:`ServedModels`.

They exist on every app and refuse (403) unless the server has API keys; a body is read as boundedly as
``/predict``'s (``--max-body``), and a refusal never echoes more than a short prefix of what was sent.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ortpipe.runtime.classifier import TextClassifier
from ortpipe.serve.asgi import parse_json, read_body
from ortpipe.serve.errors import ServeError
from ortpipe.serve.protocol import error_responses, invalid

ACCESS_LOG = logging.getLogger("ortpipe.access")  # the same log as /predict's lines
LOAD_BODY = {"type": "object", "additionalProperties": False, "properties": {"bundle": {
    "type": "string", "description": "a bundle folder (default: the model's own path again)"}}}


def default_loader(path: str, name: str, old: TextClassifier | None) -> TextClassifier:
    """How ``POST /models/{name}/load`` loads a bundle when the server was given no loader: as the old version
    was loaded (its :class:`~ortpipe.runtime.load_options.LoadOptions`), a new name on the shared pool."""
    if old is None:
        return TextClassifier.load(path, shared_threads=True)
    return TextClassifier.load(path, **old.load_options.as_kwargs())


async def _answer(work, what: str) -> JSONResponse:
    try:
        done = await work
    except ServeError as exc:
        ACCESS_LOG.info("%s status=%d %s", what, exc.status, exc)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
    ACCESS_LOG.info("%s status=200 %s", what, done)
    return JSONResponse(done)


async def load_route(name: str, request: Request):
    server = request.app.state.ortpipe
    try:
        config = server.config
        body = parse_json(await read_body(request.receive, request.headers.get("content-length"), config.max_body,
                                          config.head_timeout_s) or b"{}")
        if not isinstance(body, dict) or set(body) - {"bundle"}:
            raise invalid("the body must be {} or {\"bundle\": PATH}")
    except ServeError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    return await _answer(server.served.load(name, body.get("bundle")), f"load model={name}")


async def unload_route(name: str, request: Request):
    return await _answer(request.app.state.ortpipe.served.unload(name), f"unload model={name}")


def add_management_routes(app: FastAPI) -> None:
    refusals = (403, 404, 409, 501)
    app.add_api_route("/models/{name}/load", load_route, methods=["POST"],
                      summary="Load a model (or a new version of one) beside the old, then switch",
                      responses=error_responses(400, *refusals, 413,
                                                (422, "the bundle cannot be loaded or failed its probe check")),
                      openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                          "schema": LOAD_BODY}}}})
    app.add_api_route("/models/{name}/unload", unload_route, methods=["POST"],
                      summary="Stop serving a model once it has answered what it holds",
                      responses=error_responses(*refusals))
