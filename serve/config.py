"""The server's settings: flags of ``ortpipe serve``, each with an ``ORTPIPE_*`` environment default."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching of ``ortpipe serve`` (every one shown by ``GET /info``)."""

    host: str = "127.0.0.1"
    port: int = 8080
    # padded tokens per model call; by measurement 1024 beat 4096 (less padding), and 512 matched 1024
    # while holding 40 MB less in a 10-minute soak (with --concurrent-batches 2, 256 did better)
    max_batch_tokens: int = 512
    max_batch_size: int = 64  # texts per model call
    max_wait_ms: float = 2.0  # how long the batcher waits for more texts once one is queued
    # model calls at once, each from its own worker thread; 0 (auto): 2 where they can run side by side on
    # one thread each (a CPU model with threads of its own, 2 or more) and the memory setting is fast, else 1.
    # Side by side takes 8 % of the CPU per sentence off at 64 clients (a fifth to a third before the pool
    # filled the calls) and costs a second session's memory: see docs/serving.md
    concurrent_batches: int = 0
    max_client_batch: int = 256  # texts per request
    max_body: int = 4 * 1024 * 1024  # bytes per request body
    max_queue: int = 4096  # texts waiting for the model, all requests together
    timeout_ms: float = 30_000.0  # a text not run by then is answered 504 and never reaches the model
    drain_s: float = 30.0  # on SIGTERM, how long queued work may take to finish
    # long texts: every request's default window ("off", "auto" or tokens); a request's "window" wins
    window: str = "off"
    max_client_windows: int = 2048  # windows per request (more: 413); each counts as a text in the queue
    # a request's head (request line + headers) must arrive within this, and its body's parts as often
    head_timeout_s: float = 10.0
    max_connections: int = 1024  # open connections at once; more are closed as they arrive

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def env_defaults(cls, environ=None) -> dict:
        """``ORTPIPE_MAX_QUEUE=100`` and the like, parsed to each field's type."""
        environ = os.environ if environ is None else environ
        given = {spec.name: environ[f"ORTPIPE_{spec.name.upper()}"] for spec in fields(cls)
                 if f"ORTPIPE_{spec.name.upper()}" in environ}
        return cls.parse(given, prefix="ORTPIPE_")

    @classmethod
    def parse(cls, given: dict, prefix: str = "") -> dict:
        """Settings given as text (``{"max_queue": "100"}``), parsed to each field's type; unknown names refused."""
        types = {spec.name: type(getattr(cls, spec.name)) for spec in fields(cls)}
        found = {}
        for name, raw in given.items():
            if name not in types:
                raise ValueError(f"unknown setting {name!r}; the settings are {sorted(types)}")
            try:
                found[name] = types[name](raw)
            except ValueError as exc:
                raise ValueError(f"{prefix}{name.upper() if prefix else name}={raw!r} is not a valid "
                                 f"{types[name].__name__}") from exc
        return found

    @property
    def default_window(self) -> int | str | None:
        """``window`` as a request's ``"window"`` field reads: None (off), ``"auto"`` or a number of tokens."""
        if self.window in ("off", "none", ""):
            return None
        return self.window if self.window == "auto" else int(self.window)

    def check(self) -> "ServeConfig":
        """Raises ValueError naming the first limit that is not positive."""
        if not (self.window in ("off", "none", "", "auto") or self.window.isdigit()):
            raise ValueError(f"window must be off, auto or a number of tokens, got {self.window!r}")
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name not in ("host", "port", "max_wait_ms", "window", "concurrent_batches") and value <= 0:
                raise ValueError(f"{spec.name} must be positive, got {value}")
        if self.max_wait_ms < 0 or not 0 <= self.port < 65536:
            raise ValueError("max_wait_ms must be ≥ 0 and port within 0..65535")
        if self.concurrent_batches < 0:
            raise ValueError(f"concurrent_batches must be ≥ 0 (0: auto), got {self.concurrent_batches}")
        return self
