"""Which models a server holds: ``--model NAME=PATH`` flags or a ``--config serve.toml``, checked at the edge.

    # serve.toml
    [server]                      # ortpipe serve's limits (port, max_body, …), threads, default_model
    port = 8080
    default_model = "sentiment"

    [models.sentiment]            # one table per model: its bundle, variant, memory and limits
    bundle = "bundles/sst2-minilm"
    variant = "int8"
    max_queue = 1024
    window = "auto"

    [models.topic]
    bundle = "bundles/topic"

A model's limits (``max_queue``, ``timeout_ms``, ``max_client_batch``,
``max_client_windows``, ``max_batch_tokens``, ``max_batch_size``,
``max_wait_ms``, ``window``) are its own; the rest (host, port, body size,
drain, model calls at once) are the server's. ONNX Runtime threads are the
server's too: every model runs on one shared pool.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ortpipe.runtime.errors import OrtpipeError
from ortpipe.serve.config import ServeConfig

PER_MODEL = ("max_queue", "timeout_ms", "max_client_batch", "max_client_windows", "max_batch_tokens",
             "max_batch_size", "max_wait_ms", "window")
MODEL_KEYS = {"bundle", "variant", "memory", "provider", *PER_MODEL}
SERVER_KEYS = {"threads", "default_model"}  # besides ServeConfig's fields


@dataclass(frozen=True)
class ModelSpec:
    """One model to serve: its name, bundle folder, variant, and the limits it sets for itself."""

    name: str
    bundle: str | None
    variant: str | None = None
    memory: str | None = None
    provider: str | None = None
    limits: dict = field(default_factory=dict)

    def config(self, server: ServeConfig) -> ServeConfig:
        """The server's settings with this model's own limits in place."""
        return dataclasses.replace(server, **self.limits).check() if self.limits else server


def parse_model_flag(raw: str) -> ModelSpec:
    """``NAME=PATH``, or a bare ``PATH`` named by its folder."""
    name, sep, path = raw.partition("=")
    if not sep:
        path = raw
        name = Path(raw.rstrip("/")).name
    if not name or not path or "/" in name:
        raise OrtpipeError(f"--model {raw!r}: expected NAME=PATH (a name without '/') or a bundle folder")
    return ModelSpec(name, path)


def unique(specs: list[ModelSpec]) -> list[ModelSpec]:
    """``specs`` if no two share a name; else an error naming the name."""
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise OrtpipeError(f"two models are named {spec.name!r}: give each its own NAME=PATH")
        seen.add(spec.name)
    return specs


def read_config(path: str | Path) -> tuple[dict, list[ModelSpec]]:
    """(the ``[server]`` table, the models) of a ``serve.toml``; relative bundle paths are the file's."""
    try:
        import tomllib
    except ModuleNotFoundError as exc:  # Python 3.10
        raise OrtpipeError("--config needs Python 3.11 or newer (tomllib)") from exc
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OrtpipeError(f"--config {path}: cannot read it ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise OrtpipeError(f"--config {path}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"server", "models"}
    if unknown:
        raise OrtpipeError(f"--config {path}: unknown table(s) {sorted(unknown)}; expected [server] and [models.NAME]")
    server = data.get("server", {})
    server_fields = {spec.name for spec in dataclasses.fields(ServeConfig)} | SERVER_KEYS
    if not isinstance(server, dict) or set(server) - server_fields:
        raise OrtpipeError(f"--config {path}: [server] has unknown key(s) {sorted(set(server) - server_fields)}")
    models = data.get("models", {})
    if not isinstance(models, dict) or not models:
        raise OrtpipeError(f"--config {path}: no [models.NAME] table: name at least one model and its bundle")
    specs = []
    for name, table in models.items():
        if not isinstance(table, dict) or "bundle" not in table:
            raise OrtpipeError(f"--config {path}: [models.{name}] needs bundle = \"PATH\"")
        bad = set(table) - MODEL_KEYS
        if bad:
            raise OrtpipeError(f"--config {path}: [models.{name}] has unknown key(s) {sorted(bad)}; a model takes "
                               f"{sorted(MODEL_KEYS)} (threads are the server's: every model shares one pool)")
        try:
            limits = ServeConfig.parse({key: str(table[key]) for key in PER_MODEL if key in table})
        except ValueError as exc:
            raise OrtpipeError(f"--config {path}: [models.{name}]: {exc}") from exc
        bundle = Path(table["bundle"])
        specs.append(ModelSpec(name, str(bundle if bundle.is_absolute() else path.parent / bundle),
                               table.get("variant"), table.get("memory"), table.get("provider"), limits))
    return server, unique(specs)
