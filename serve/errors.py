"""The server's refusals: each error class declares its HTTP status, TEI ``error_type`` and metrics reason, once.

The ``/predict`` handler renders any :class:`ServeError` the same way (status, ``{"error", "error_type"}``,
the class's headers) and counts it under ``reason`` in ``ortpipe_rejections``; the OpenAPI error lists are
built from :data:`STATUS_MEANINGS`, so what a route documents and what it answers come from one table.
"""

from __future__ import annotations

MAX_ECHO = 120  # characters of a client's value that an error message repeats back


class ServeError(Exception):
    """A request the server refuses or gives up on. Subclasses set ``status``, ``error_type`` and ``reason``."""

    status = 500
    error_type = "backend"
    reason = "error"
    headers: dict = {}

    def body(self) -> dict:
        return {"error": str(self), "error_type": self.error_type}


class Overloaded(ServeError):
    """The queue cannot take these texts now."""

    status, error_type, reason = 429, "overloaded", "overloaded"
    headers = {"Retry-After": "1"}

    @classmethod
    def unless_room(cls, depth: int, count: int, max_queue: int) -> None:
        """Raise when ``count`` more texts would take a queue holding ``depth`` past ``max_queue``."""
        if depth + count > max_queue:
            raise cls(f"{depth} texts are waiting; {count} more would pass the queue limit of {max_queue} "
                      "(--max-queue)")


class Expired(ServeError):
    """The text waited past its deadline and was never run."""

    status, error_type, reason = 504, "timeout", "timeout"


class Retired(ServeError):
    """The model version a request was routed to stopped before the request reached its queue."""

    status, error_type, reason = 503, "unhealthy", "retired"
    headers = {"Retry-After": "1"}

    def __init__(self, message: str = "the model version this request was routed to has been retired; send it "
                                      "again"):
        super().__init__(message)


class Unauthorized(ServeError):
    """No API key, or a wrong one, where the server has keys."""

    status, error_type, reason = 401, "unauthorized", "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class ClientGone(ServeError):
    """The client closed the connection before its answer was ready."""

    status, error_type, reason = 499, "disconnected", "disconnected"

    def __init__(self, message: str = "client disconnected"):
        super().__init__(message)


# each status's meaning, for the OpenAPI error responses of every route
STATUS_MEANINGS = {
    400: "the body is not JSON, not UTF-8, or nested too deeply",
    401: "no API key, or a wrong one",
    403: "no API key configured, or a bundle outside --model-root",
    404: "no such model",
    408: "the body stopped arriving (--head-timeout-s)",
    409: "the model is being loaded, or is the default model (it cannot be unloaded)",
    413: "too many inputs, windows or bytes",
    422: "a field, header, text or bundle the model cannot take",
    429: "the queue is full (Retry-After)",
    499: "the client disconnected",
    500: "the model failed on this batch",
    501: "not on this engine",
    503: "the server is draining, or the model version was retired (Retry-After)",
    504: "the request waited past its deadline",
}


def short(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a refusal never echoes a huge value back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
