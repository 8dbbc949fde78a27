"""What a server exposed beyond loopback needs: API keys, and which bundle folders it may load at run time.

    ortpipe serve --api-key "$KEY" --model-root /srv/bundles      # or ORTPIPE_API_KEYS=key1,key2

With keys set, every route but ``/health`` (and ``/metrics`` with
``--public-metrics``) needs ``Authorization: Bearer KEY``; a missing or wrong
key is a 401 with the JSON error body. Keys are compared in constant time
(``hmac.compare_digest``, against every key whatever the first one says),
never logged and never shown (``/info`` lists the limits, not the keys).
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from ortpipe.runtime.errors import OrtpipeError
from ortpipe.serve.errors import Unauthorized
from ortpipe.serve.protocol import error_responses

API_KEYS_ENV = "ORTPIPE_API_KEYS"
OPEN_PATHS = ("/health",)
# the schema and its browser page hold no secret: open with keys on unless --private-docs
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/openapi.json")
DOCS_PREFIX = "/static-offline-docs/"  # Swagger UI's own files, served by the app (fastapi-offline)


def open_paths_of(public_metrics: bool, private_docs: bool) -> tuple[str, ...]:
    """The paths a server with keys answers without one: what the key guard lets by and the schema leaves open."""
    return OPEN_PATHS + (("/metrics",) if public_metrics else ()) + (() if private_docs else DOCS_PATHS)


def api_keys_from(flags: Sequence[str] | None, environ=None) -> tuple[str, ...]:
    """The keys of ``--api-key`` flags, else of ``$ORTPIPE_API_KEYS`` (comma-separated), stripped.

    Raises:
        OrtpipeError: a blank ``--api-key`` (``"$KEY"`` with ``$KEY`` unset), or ``ORTPIPE_API_KEYS`` set with no
            key in it (``" , "``): a server asked for keys never starts without them.
    """
    environ = os.environ if environ is None else environ
    if flags:
        where, keys = "--api-key", list(flags)
    elif API_KEYS_ENV in environ:
        where, keys = API_KEYS_ENV, environ[API_KEYS_ENV].split(",")
    else:
        return ()
    given = tuple(key.strip() for key in keys if key.strip())
    # each --api-key is one key, so a blank one is a mistake; the variable's list may end with a comma
    if not given or (flags and len(given) < len(keys)):
        raise OrtpipeError(f"{where}: an empty key (an unset variable?); refusing to start a server whose keys "
                           "would let anyone in. Give real keys, or none")
    return given


def document_keys(app, public_metrics: bool) -> None:
    """The OpenAPI schema says which routes need ``Authorization: Bearer`` and that they answer 401 without it."""
    plain = app.openapi
    open_paths = set(open_paths_of(public_metrics, private_docs=True))  # /docs and its schema are not in it

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
                operation.setdefault("responses", {}).update(error_responses(401))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def key_matches(given: str, keys: Iterable[str]) -> bool:
    """Whether ``given`` is one of ``keys``, in time that does not depend on where they differ."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.encode("utf-8"))
    return found


class ApiKeyGuard:
    """Pure ASGI, outermost: refuses every HTTP request without a right ``Authorization: Bearer`` key."""

    def __init__(self, app, keys: Sequence[str], public_metrics: bool = False, private_docs: bool = False,
                 on_refused=lambda: None):
        self.app, self.keys, self.docs_open, self.on_refused = app, tuple(keys), not private_docs, on_refused
        self.open = open_paths_of(public_metrics, private_docs)

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or not self.keys or path in self.open
                or (self.docs_open and scope.get("method") == "GET" and path.startswith(DOCS_PREFIX))):
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        # UTF-8, as clients send it (a non-ASCII key matches); undecodable bytes kept as surrogates, never a match
        scheme, _, given = header.decode("utf-8", "surrogateescape").partition(" ")
        if scheme.lower() == "bearer" and key_matches(given.strip(), self.keys):
            await self.app(scope, receive, send)
            return
        self.on_refused()  # counted in ortpipe_rejections{reason="unauthorized"}
        why = "a wrong API key" if given else "no API key"
        refused = Unauthorized(f"{why}: send the header 'Authorization: Bearer KEY' with a key the server was "
                               "started with (--api-key)")
        body = json.dumps(refused.body()).encode()
        await send({"type": "http.response.start", "status": refused.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *((k.lower().encode(), v.encode()) for k, v in refused.headers.items())]})
        await send({"type": "http.response.body", "body": body})


def allowed_bundle(path: str | Path, roots: Sequence[str | Path], own: Iterable[str | Path] = ()) -> Path:
    """``path`` resolved, if it is one of ``own`` or lies under one of ``roots``; else PermissionError."""
    resolved = Path(path).resolve()
    if any(resolved == Path(p).resolve() for p in own):
        return resolved
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    where = ", ".join(str(Path(r).resolve()) for r in roots) or "none given"
    raise PermissionError(f"{path} is not under a folder this server may load from (--model-root: {where})")
