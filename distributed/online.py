"""``ortpipe serve``'s HTTP API as a Ray Serve deployment: the same routes, limits and answers, on N replicas.

    ortpipe serve --engine ray --replicas 2 --port 8080          # a local Ray, or --address to join one
    serve run ortpipe.distributed.online:app_builder bundle=/path/to/bundle replicas=2

Each replica fetches the shipped bundle on its node (sha256 checked), loads
it once and serves :func:`ortpipe.serve.app.create_app` itself, so requests,
answers, status codes and ``/metrics`` are those of ``ortpipe serve``; only
the batcher differs: :class:`ServeBatcher` gathers texts with Ray Serve's
``@serve.batch`` and runs each gathered batch through the runtime's one
batching loop (``--max-batch-size`` texts, ``--max-batch-tokens`` padded tokens
per model call). Overload is refused with 429 at two places: a replica whose
queue would pass ``--max-queue`` texts answers as ``ortpipe serve`` does (JSON,
``Retry-After``), and Serve's router refuses requests past
``max_queued_requests`` (429 via its ``BackpressureConfig``, with ``Retry-After``).
Metrics are per replica (each answers ``/metrics`` from its own registry).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields, replace

import numpy as np
from ray import serve
from ray.serve.config import BackpressureConfig

from ortpipe.distributed.shipping import ShippedBundle, materialize, ship_bundle
from ortpipe.runtime.batching import run_in_batches
from ortpipe.serve.batcher import BatchStats, Expired, Overloaded
from ortpipe.serve.config import ServeConfig

APP_NAME = "ortpipe"


@dataclass(frozen=True)
class _Text:
    encoding: object
    deadline: float


class ServeBatcher:
    """:class:`ortpipe.serve.batcher.Batcher`'s interface on Ray Serve's ``@serve.batch`` (one text per item).

    One batch at a time per replica (replicas are what runs side by side on Ray).
    """

    concurrent_batches = 1
    alone = True

    def __init__(self, run_model, max_batch_size: int, max_batch_tokens: int, max_wait_ms: float, max_queue: int,
                 on_batch=lambda stats: None, on_dropped=lambda reason: None, concurrent_batches: int = 1,
                 call_cost: int | None = None):
        self._run_model = run_model
        self.max_batch_size, self.max_batch_tokens, self.max_queue = max_batch_size, max_batch_tokens, max_queue
        self.call_cost = call_cost
        self._on_batch, self._on_dropped = on_batch, on_dropped
        self.depth = 0  # texts submitted and not yet answered
        self._together.set_max_batch_size(max_batch_size)
        self._together.set_batch_wait_timeout_s(max_wait_ms / 1000.0)

    def start(self) -> None:
        """Nothing to start: Serve runs the batch loop."""

    async def stop(self) -> None:
        """Nothing to stop: Serve drains the replica."""

    async def submit(self, encodings: list, deadline: float) -> tuple[np.ndarray, float, float]:
        """As :meth:`ortpipe.serve.batcher.Batcher.submit`: (logits, seconds queued, seconds in the model)."""
        Overloaded.unless_room(self.depth, len(encodings), self.max_queue)
        self.depth += len(encodings)
        queued_at = time.perf_counter()
        try:
            outcomes = await asyncio.gather(*(self._together(_Text(e, deadline)) for e in encodings))
        finally:
            self.depth -= len(encodings)
        failed = next((o for o in outcomes if isinstance(o, Exception)), None)
        if failed is not None:
            raise failed
        started = [o[1] for o in outcomes]
        return np.stack([o[0] for o in outcomes]), max(started) - queued_at, time.perf_counter() - min(started)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def _together(self, texts: list[_Text]) -> list:
        """One Serve batch: texts past their deadline answered :class:`Expired`, the rest run in one worker thread."""
        now = time.perf_counter()
        live = [i for i, text in enumerate(texts) if now <= text.deadline]
        outcomes: list = [Expired("the request waited past its deadline and was not run")] * len(texts)
        for _ in range(len(texts) - len(live)):
            self._on_dropped("timeout")
        if live:
            results = await asyncio.to_thread(self._run, [texts[i].encoding for i in live])
            for index, result in zip(live, results):
                outcomes[index] = result
        return outcomes

    def _run(self, encodings: list) -> list[tuple[np.ndarray, float]]:
        """In a worker thread: the one batching loop; (logits row, when its model call started) per text."""
        def run_batch(batch: list) -> list:
            started = time.perf_counter()
            logits = self._run_model(batch)
            self._on_batch(BatchStats.of(batch, time.perf_counter() - started))
            return [(row, started) for row in logits]

        return run_in_batches(encodings, [len(e) for e in encodings], self.max_batch_size, run_batch,
                              max_tokens=self.max_batch_tokens, call_cost=self.call_cost)


@dataclass(frozen=True)
class ReplicaOptions:
    """How each replica loads the bundle (``load()``'s arguments) and the server's limits."""

    provider: str = "auto"
    threads: int | None = None
    memory: str | None = None
    config: ServeConfig = ServeConfig()
    default_model: str | None = None
    api_keys: tuple[str, ...] = ()  # every route but /health needs one (loading at run time stays local-only)
    public_metrics: bool = False


@dataclass(frozen=True)
class ShippedModel:
    """One model of a multi-model app: its name, its shipped bundle, and its own limits and load options."""

    name: str
    shipped: ShippedBundle
    config: ServeConfig | None = None  # None: the app's
    memory: str | None = None
    provider: str | None = None


@serve.ingress()
class OrtpipeReplica:
    """One Serve replica: every shipped bundle checked and loaded on its node, served by ``create_app``.

    With several models they share the replica's ONNX Runtime thread pool (``use_shared_threads``), as
    ``ortpipe serve --model`` does in one process.
    """

    def __init__(self, shipped: ShippedBundle | tuple[ShippedModel, ...], options: ReplicaOptions):
        from ortpipe.runtime.classifier import TextClassifier
        from ortpipe.runtime.inference import use_shared_threads

        models = (ShippedModel(shipped.name or "default", shipped),) if isinstance(shipped, ShippedBundle) else shipped
        shared = len(models) > 1
        if shared:
            use_shared_threads(options.threads)
        # one batch at a time per model and replica (ServeBatcher): /info shows it; replicas run side by side
        self.config = replace(options.config, concurrent_batches=1)
        self.models = {}
        for model in models:
            clf = TextClassifier.load(materialize(model.shipped), variant=model.shipped.variant,
                                      provider=model.provider or options.provider,
                                      threads=None if shared else options.threads, spinning=False,
                                      memory=model.memory or options.memory, shared_threads=shared)
            own = replace(model.config, concurrent_batches=1) if model.config else self.config
            self.models[model.name] = (clf, own)
        self.clf = next(iter(self.models.values()))[0]
        self.default_model = options.default_model
        self.api_keys, self.public_metrics = options.api_keys, options.public_metrics

    def __serve_build_asgi_app__(self):
        from ortpipe.serve.app import create_app

        return create_app(self.models, self.config, batcher_factory=ServeBatcher, request_id_header=False,
                          default_model=self.default_model, api_keys=self.api_keys,
                          public_metrics=self.public_metrics)  # Serve sets x-request-id


def build_app(shipped: ShippedBundle | tuple[ShippedModel, ...], options: ReplicaOptions, replicas: int = 1):
    """The bound Serve application: ``replicas`` replicas, each reserving ``threads`` CPUs."""
    config = options.config
    deployment = serve.deployment(
        OrtpipeReplica, name="ortpipe", num_replicas=replicas,
        # requests a replica takes at once: well above the batch size, so that batches fill from many requests
        # and waiting happens in the replica's own queue (counted in texts, 429 past --max-queue, drained on
        # shutdown) rather than in Serve's router (whose queued requests a deleted app drops)
        max_ongoing_requests=max(2 * config.max_batch_size, config.max_queue),
        max_queued_requests=config.max_queue,
        backpressure_config=BackpressureConfig(status_code=429, retry_after_s=1),
        graceful_shutdown_timeout_s=config.drain_s,
        ray_actor_options={"num_cpus": options.threads or 1})
    return deployment.bind(shipped, options)


def app_builder(args: dict):
    """For ``serve run ortpipe.distributed.online:app_builder bundle=PATH [variant=V] [replicas=N] [threads=T]``
    plus any ``ortpipe serve`` limit by its name (``max_queue=1024``)."""
    args = dict(args)
    bundle, variant = args.pop("bundle", None), args.pop("variant", None)
    replicas, threads = int(args.pop("replicas", 1)), args.pop("threads", None)
    provider, memory = args.pop("provider", "auto"), args.pop("memory", None)
    config = ServeConfig(**ServeConfig.parse(args)).check()
    options = ReplicaOptions(provider, int(threads) if threads else None, memory, config)
    return build_app(ship_bundle(bundle, variant), options, replicas)


def ship_models(specs, variant: str | None, config: ServeConfig) -> tuple[ShippedModel, ...]:
    """Each :class:`~ortpipe.serve.models.ModelSpec`'s bundle shipped, with its own limits."""
    return tuple(ShippedModel(spec.name, replace(ship_bundle(spec.bundle, spec.variant or variant), name=spec.name),
                              spec.config(config), spec.memory, spec.provider) for spec in specs)


def serve_until_signalled(bundle, variant, options: ReplicaOptions, replicas: int, address: str | None,
                          specs=None) -> int:
    """``ortpipe serve --engine ray``: deploy, print the URL, serve until SIGTERM/SIGINT, then drain and exit 0.

    ``specs``: the models of ``--model``/``--config`` (None: ``bundle`` alone).
    """
    from ortpipe.distributed.data import connect

    config = options.config
    connect(address, quiet=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which sets its own (exit at once)
        signal.signal(sig, lambda *_: stop.set())
    serve.start(http_options={"host": config.host, "port": config.port})
    shipped = ship_bundle(bundle, variant) if specs is None else ship_models(specs, variant, config)
    serve.run(build_app(shipped, options, replicas), name=APP_NAME, route_prefix="/", blocking=False)
    models = "" if specs is None else f", models {', '.join(spec.name for spec in specs)}"
    print(f"ortpipe serve: http://{config.host}:{config.port} (Ray Serve, {replicas} replica"
          f"{'s' if replicas != 1 else ''}{models})", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    started = time.monotonic()
    serve.delete(APP_NAME)  # each replica finishes what it holds, within graceful_shutdown_timeout_s (--drain-s)
    print(f"ortpipe serve: drained in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return 0


def replica_options(args, config: ServeConfig) -> ReplicaOptions:
    """:class:`ReplicaOptions` from ``ortpipe serve``'s parsed flags."""
    from ortpipe.serve.security import api_keys_from

    names = {spec.name for spec in fields(ReplicaOptions)} - {"config", "api_keys"}
    return ReplicaOptions(**{name: getattr(args, name) for name in names}, config=config,
                          api_keys=api_keys_from(args.api_key))
