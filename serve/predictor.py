"""One served model: parse → tokenize → submit to its batcher → postprocess, between the routes and the batcher.

A :class:`Predictor` per model holds the classifier, that model's limits
(:class:`~ortpipe.serve.config.ServeConfig`), its batcher (on the server's one
:class:`~ortpipe.serve.scheduler.Scheduler`) and its metrics view, so
``create_app`` only registers routes and the Ray replica reuses the same object.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Awaitable, Callable

from ortpipe.runtime.classifier import TextClassifier
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.backends import make_model
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.call import ModelFacts, Plan
from ortpipe.runtime.windows import WindowOptions, text_chars
from ortpipe.runtime.zero_shot import ZERO_SHOT, ZeroShotPlan
from ortpipe.runtime.zero_shot_classifier import entailment_of
from ortpipe.serve.config import ServeConfig
from ortpipe.serve.metrics import ServerMetrics
from ortpipe.serve.protocol import HTTP_NAMES, PredictRequest, RequestError, invalid, parse_predict
from ortpipe.serve.zero_shot_protocol import ZeroShotRequest, is_zero_shot, parse_zero_shot

TIMEOUT_HEADER = "x-timeout-ms"
INLINE_TOKENIZE = 8  # requests with more texts are tokenized in a worker thread
INLINE_CHARS = 16_384  # and so are requests with more characters (a long document takes milliseconds)


def can_run_side_by_side(clf: TextClassifier) -> bool:
    """Whether two of ``clf``'s batches can run at once on one thread each: a CPU model whose session has
    threads of its own (not the shared pool), 2 or more."""
    if getattr(clf.model, "shared_threads", False) or clf.provider != "cpu":
        return False
    return (clf.model.threads or os.cpu_count() or 1) > 1


def concurrent_batches_for(asked: int, models: list[TextClassifier]) -> int:
    """``--concurrent-batches``, with 0 (auto) made 2 where every model can run batches side by side and was
    loaded with ``--memory fast``, else 1.

    Measured on 2 cores (AMD EPYC Zen 4), int8: side by side on one-thread sessions took 21-35 % of the server's
    CPU per sentence off at 64 clients (8 % once the pool filled the calls), but the soak held 277 MiB instead
    of 185 (a second session, a second arena, two calls' activations): over the lean default's bound
    (docs/memory.md), so only ``fast`` asks.
    On the shared pool of several models, or a GPU, side by side was not measured.
    """
    if asked:
        return asked
    return 2 if models and all(can_run_side_by_side(clf) and clf.memory.fast for clf in models) else 1


def single_thread_model(clf: TextClassifier, concurrent_batches: int) -> "OnnxModel | None":
    """A one-thread session of ``clf``'s variant for batches that run side by side; None: ``clf.model`` serves all.

    A lone batch is fastest on every core (ONNX Runtime's intra-op threads), but two batches at once each
    on one thread beat two that share the cores' threads: measured on 2 cores at 64 clients, 81-83 % of
    in-process throughput against 67-70 %. So on the CPU a server running batches side by side keeps one
    more session, with one thread: about 30 MiB for the default int8 model, and with two calls'
    activations the server's 10-minute soak holds 285 MiB instead of 184. Not for a model on the shared
    thread pool (several models), whose calls share that pool's threads.
    """
    if concurrent_batches < 2 or not can_run_side_by_side(clf):
        return None
    return make_model(clf.backend, clf.model.path, provider="cpu", threads=1, memory=clf.memory.requested)


def fewest_windows(items: list, options: WindowOptions) -> int:
    """A lower bound of the windows ``items`` make, from their words, without tokenizing them.

    Every whitespace-separated word of a text is at least one token, and a window holds at most
    ``window`` of them, ``stride`` shared with the next; so a request whose bound passes the limit is
    refused in milliseconds, before a 4 MB text is tokenized whole.
    """
    step = max(options.window - options.stride, 1)
    total = 0
    for item in items:
        words = len((item[0] if isinstance(item, tuple) else item).split())
        total += 1 + max(0, -(-(words - options.window) // step))
    return total


def deadline_of(raw: str | None, config: ServeConfig) -> float:
    """When a request's texts expire: now + ``config.timeout_ms``, or the ``x-timeout-ms`` header's value."""
    timeout_ms = config.timeout_ms
    if raw is not None:
        try:
            timeout_ms = float(raw)
        except ValueError:
            timeout_ms = float("nan")
        if not math.isfinite(timeout_ms) or timeout_ms < 0:  # nan and inf would never expire
            raise invalid(f"header {TIMEOUT_HEADER} must be a finite number of milliseconds, 0 or more; "
                          f"got {raw!r}") from None
    return time.perf_counter() + timeout_ms / 1000.0


class Predictor:
    """A model as the server serves it.

    Args:
        name: how routes and metrics name it.
        clf: the loaded classifier.
        config: its limits (``max_queue``, ``timeout_ms``, ``window`` … each model its own).
        metrics: the server's metrics; this model gets its own ``model`` label.
        batcher_factory: see :func:`~ortpipe.serve.app.create_app`.
        scheduler: the workers every model's batches run on (None: the batcher's own).
    """

    def __init__(self, name: str, clf: TextClassifier, config: ServeConfig, metrics: ServerMetrics,
                 batcher_factory, scheduler=None, bundle_path: str | None = None, bundle_digest: str = ""):
        config.check()
        try:
            clf.window_options(config.default_window)
        except InputError as exc:
            raise ValueError(f"model {name!r}: --window {config.window}: {exc}") from None
        self.name, self.clf, self.config = name, clf, config
        self.bundle_path = bundle_path or str(clf.bundle.path)
        self.ready = False
        self.entailment = entailment_of(clf)  # None: no zero-shot
        self.inflight = 0  # requests routed here and not yet answered: the version retires once none are left
        self.bundle_digest = bundle_digest
        self.metrics = metrics.model(name, queue_depth=lambda: self.batcher.depth, memory=lambda: clf.memory)
        extra = {} if scheduler is None else {"scheduler": scheduler}
        self.batcher = batcher_factory(self._run_model, config.max_batch_size, config.max_batch_tokens,
                                       config.max_wait_ms, config.max_queue, on_batch=self.metrics.batch,
                                       on_dropped=lambda reason: self.metrics.dropped_texts.labels(reason).inc(),
                                       concurrent_batches=config.concurrent_batches, call_cost=clf.call_cost_tokens,
                                       **extra)
        self._side_by_side = single_thread_model(clf, getattr(self.batcher, "concurrent_batches", 1))

    def _run_model(self, encodings: list):
        encoded = self.clf.tokenizer.collate(encodings)
        side = self._side_by_side
        return (self.clf.model if side is None or self.batcher.alone else side)(encoded)

    async def start(self) -> None:
        """Start its batcher and pay the first ONNX Runtime call (it allocates) before it counts as ready."""
        self.batcher.start()
        await asyncio.to_thread(self.clf, "warm-up")
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.batcher.stop()

    @property
    def idle(self) -> bool:
        """No request routed here is still being answered, and nothing is queued."""
        return not self.inflight and not self.batcher.depth

    async def predict(self, body, timeout_header: str | None, timings: dict,
                      guard: Callable[[Awaitable], Awaitable]) -> list:
        """The answer to a parsed ``/predict`` body (``guard`` awaits the batcher, watching the client).

        Counted in :attr:`inflight` from its first line (no await comes before it), so a version that is
        switched away from is retired only after every request routed to it has its answer.

        Raises:
            ServeError: a refusal, mapped to its status by the app.
        """
        self.inflight += 1
        try:
            parsed = self.parse(body)
            return parsed.shape((await self._run(parsed, timeout_header, timings, guard))[0])
        finally:
            self.inflight -= 1

    async def classify(self, texts: list[str], truncate: bool, timeout_header: str | None, timings: dict,
                       guard: Callable[[Awaitable], Awaitable]) -> tuple[list[list[float]], int]:
        """vLLM's ``/classify``: per text its scores in label order, made as ``/predict`` makes them, and the
        tokens the model read."""
        self.inflight += 1
        try:  # [text] each: never TEI's pair reading of two strings
            parsed = self.parse({"inputs": [[text] for text in texts], "truncate": truncate})
            results, plan = await self._run(parsed, timeout_header, timings, guard)
        finally:
            self.inflight -= 1
        position = {label: index for index, label in enumerate(self.clf.labels)}
        probs = [[0.0] * len(position) for _ in results]
        for row, labels in zip(probs, results):
            for entry in labels:
                row[position[entry["label"]]] = entry["score"]
        return probs, int(sum(plan.lengths))

    async def _run(self, parsed: PredictRequest | ZeroShotRequest, timeout_header: str | None, timings: dict,
                   guard: Callable[[Awaitable], Awaitable]) -> tuple[list, Plan | ZeroShotPlan]:
        """Per text its answer, and the plan that made it: plan, queue, run, finish."""
        deadline = deadline_of(timeout_header, self.config)
        started = time.perf_counter()
        plan = await self._plan(parsed)
        timings["x-tokenization-time"] = time.perf_counter() - started
        self.metrics.tokenize_seconds.observe(timings["x-tokenization-time"])
        logits, queued, inferred = await guard(self.batcher.submit(plan.rows, deadline))
        timings["x-queue-time"], timings["x-inference-time"] = queued, inferred
        self.metrics.queue_seconds.observe(queued)
        return plan.finish(logits, self.clf.labels), plan

    def parse(self, body) -> PredictRequest | ZeroShotRequest:
        """A checked body: a zero-shot one when it names ``candidate_labels``, else TEI's or the pipeline's."""
        clf, config = self.clf, self.config
        facts = ModelFacts(clf.manifest.problem_type, tuple(clf.labels), clf.window_options,
                           calibration=clf.calibration)
        if is_zero_shot(body):
            return parse_zero_shot(body, facts, self.entailment, config.max_client_batch, config.default_window)
        return parse_predict(body, facts, config.max_client_batch, default_window=config.default_window)

    async def _plan(self, parsed: PredictRequest | ZeroShotRequest) -> Plan | ZeroShotPlan:
        """The request's rows (encodings, or windows of each text), tokenized in a thread when large."""
        chars = sum(map(text_chars, parsed.items))
        if parsed.windows is not None and chars > INLINE_CHARS:
            self._refuse_windows(fewest_windows(parsed.items, parsed.windows), parsed.windows, "at least ")
        try:
            if len(parsed.items) <= INLINE_TOKENIZE and chars <= INLINE_CHARS:  # a thread hop would cost more
                plan = parsed.plan(self.clf.tokenizer)
            else:
                plan = await asyncio.to_thread(parsed.plan, self.clf.tokenizer)
        except InputError as exc:
            raise invalid(exc.render(HTTP_NAMES)) from None
        if plan.explained is not None and len(plan.rows) > self.config.max_client_batch:
            raise RequestError(413, "validation", f"explain adds one model row per word: the request makes "
                                                  f"{len(plan.rows)} rows; the limit is "
                                                  f"{self.config.max_client_batch} (--max-client-batch)")
        if plan.split is None:
            self.metrics.truncated_texts.inc(plan.truncated)
            return plan
        self._refuse_windows(len(plan.rows), parsed.windows)
        self.metrics.windows.inc(len(plan.rows))
        return plan

    def _refuse_windows(self, count: int, options: WindowOptions, bound: str = "") -> None:
        if count > self.config.max_client_windows:
            raise RequestError(413, "validation", f"the request's texts make {bound}{count} windows of "
                                                  f"{options.window} tokens; the limit is "
                                                  f"{self.config.max_client_windows} (--max-client-windows)")

    def info(self) -> dict:
        """What ``GET /info`` and ``GET /models/{name}`` show."""
        clf, manifest, config = self.clf, self.clf.manifest, self.config
        return {"name": self.name, "bundle": self.bundle_path, "source_model": manifest.source_model,
                "variant": clf.variant, "provider": clf.provider, "backend": clf.backend, "labels": clf.labels,
                "problem_type": manifest.problem_type, "tasks": self.tasks, "max_input_length": manifest.max_length,
                "batch_invariant": clf.batch_invariant, "state": "ready" if self.ready else "loading",
                "window": {"recommended": manifest.window, "default": config.default_window,
                           "max_client_windows": config.max_client_windows},
                "limits": config.as_dict(), "memory": clf.memory.as_dict(),
                "calibration": clf.calibration.summary() if clf.calibration is not None else None}

    @property
    def tasks(self) -> list[str]:
        """What the model answers: text classification, and zero-shot when it has an entailment label."""
        return ["text-classification"] + ([ZERO_SHOT] if self.entailment is not None else [])

    def summary(self) -> dict:
        """One row of ``GET /models``."""
        info = self.info()
        limits = {k: info["limits"][k] for k in ("max_queue", "max_client_batch", "max_client_windows",
                                                  "timeout_ms", "max_batch_tokens", "max_batch_size", "window")}
        return {k: info[k] for k in ("name", "bundle", "labels", "tasks", "variant", "provider", "state")} | {"limits": limits}
