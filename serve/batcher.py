"""The dynamic batcher: texts from many requests, one model call per batch.

Requests put their tokenized texts on a bounded queue (counted per text) and
await the logits. Whenever a worker of the :class:`~ortpipe.serve.scheduler.Scheduler`
is free, everything queued is taken — after waiting up to ``max_wait_ms`` for
more when batches are running and less than a full batch is there (under no
load a lone request is not made to wait for company that is not coming) —
texts past their deadline or whose client left are dropped, and the texts of
requests that fit one model call join the :class:`~ortpipe.serve.pool.Pool`
(planned again with every newcomer; each call holds its oldest text), while
each larger request becomes a *cohort* of its own. Both are planned with the
runtime's batch planner (:func:`~ortpipe.runtime.batching.plan_batches`,
which every entry point uses: sorted by length, at most ``max_batch_size``
texts and ``max_batch_tokens`` padded tokens per call). The scheduler's
workers take one planned batch at a time, the pool's turn after each call of
a cohort and a cohort not yet served ahead of older ones (so a small request
waits behind at most one call of a large one), from this model and the others
it serves in turn; ONNX Runtime releases the GIL, so the event loop never
blocks on a worker's call, and each batch's results go back as soon as it
ends. A lone call of one short text (:data:`SHORT_TOKENS`) with nothing else
to do runs on the event loop thread itself: the hop to a worker and back
cost more than the few milliseconds it holds the loop; for the server's only
request, in its own step (:meth:`~ortpipe.serve.scheduler.Scheduler.run_lone`).

Float variants give every text bit-identical logits however it is batched
(padding is masked exactly). Dynamic int8 computes activation scales per call,
so its scores move slightly (about 1e-3) with batch neighbours.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ortpipe.runtime.batching import plan_batches
from ortpipe.serve.errors import Expired, Overloaded, Retired  # noqa: F401 (Expired, Overloaded: re-exported)
from ortpipe.serve.pool import Pool
from ortpipe.serve.scheduler import Cohorts, Scheduler

# A lone call of one text this short runs on the event loop thread (a few milliseconds on a CPU)
SHORT_TOKENS = 64


@dataclass
class _Pending:
    encoding: object
    future: asyncio.Future
    deadline: float
    request: int = 0  # which submit call it came with: a request's texts are planned together
    queued_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0


@dataclass(frozen=True)
class BatchStats:
    """One model call, for the metrics."""

    size: int
    tokens: int
    padded_tokens: int
    seconds: float

    @classmethod
    def of(cls, encodings: list, seconds: float) -> "BatchStats":
        """The stats of one model call on ``encodings`` that took ``seconds``."""
        lengths = [len(e) for e in encodings]  # an Encoding's or a Window's tokens, without building a window's ids
        return cls(len(encodings), sum(lengths), max(lengths) * len(encodings), seconds)


class Batcher:
    """Collects texts from concurrent requests into model calls, for one model.

    Args:
        run_model: encodings → logits rows (``collate`` + the ONNX session).
        on_batch: called (in the worker thread) with each :class:`BatchStats`.
        on_dropped: called with ``"timeout"`` or ``"disconnected"`` for each text dropped unrun.
        concurrent_batches: model calls at once, when the batcher has a scheduler of its own.
        scheduler: the :class:`~ortpipe.serve.scheduler.Scheduler` whose workers run this model's
            batches, shared with other models' batchers; None: one of its own.
        call_cost: what a model call costs beyond its padded tokens, for the planner's cuts (the model's
            :attr:`~ortpipe.runtime.classifier.TextClassifier.call_cost_tokens`).
    """

    def __init__(self, run_model: Callable[[list], np.ndarray], max_batch_size: int, max_batch_tokens: int,
                 max_wait_ms: float, max_queue: int, on_batch: Callable[[BatchStats], None] = lambda s: None,
                 on_dropped: Callable[[str], None] = lambda reason: None, concurrent_batches: int = 1,
                 scheduler: Scheduler | None = None, call_cost: int | None = None):
        self._run_model = run_model
        self.max_batch_size, self.max_batch_tokens, self.call_cost = max_batch_size, max_batch_tokens, call_cost
        self.max_wait_s, self.max_queue = max_wait_ms / 1000.0, max_queue
        self._on_batch, self._on_dropped = on_batch, on_dropped
        self._queue: list[_Pending] = []
        self._pool: Pool[_Pending] = Pool(self._batches, planned_at_once=max_batch_size)  # small requests' texts
        self._cohorts = Cohorts()  # larger requests, planned, waiting for a worker
        self._pool_went_last = False
        self._out_of_queue = 0  # texts planned or in the model
        self._owns_scheduler = scheduler is None
        self.scheduler = Scheduler(concurrent_batches) if scheduler is None else scheduler
        self.concurrent_batches = self.scheduler.workers
        self._arrived_while_running = 0  # texts queued since the last plan while the model was busy
        self._in_model = 0  # this batcher's batches running now
        self._requests = 0  # submit calls so far, to tag each request's texts
        self.stopped = False

    @property
    def alone(self) -> bool:
        """Whether a batch starting now runs alone: no other worker busy, none about to start."""
        return self.scheduler.alone

    @property
    def depth(self) -> int:
        """Texts queued or in the model now."""
        return len(self._queue) + self._out_of_queue

    def start(self) -> None:
        self.scheduler.add(self)
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop taking this model's texts; wait for what it has running (and end the workers, if they are its own).

        Texts still queued or planned are answered :class:`Retired` (nothing waits on a stopped batcher), and a
        later ``submit`` is refused the same way.
        """
        self.stopped = True
        self.scheduler.remove(self)
        left = self._queue + self._pool.drain() + [p for batch in self._cohorts.drain() for p in batch]
        self._queue = []
        for p in left:
            _settle(p.future, None, Retired())
        if self._owns_scheduler:
            await self.scheduler.stop()
        else:
            while self._in_model:
                await self.scheduler.settle()

    async def submit(self, encodings: list, deadline: float) -> tuple[np.ndarray, float, float]:
        """Queue texts; returns (logits, seconds queued, seconds in the model) once all have run.

        Raises:
            Overloaded: the queue would hold more than ``max_queue`` texts.
            Expired: a text was still queued at ``deadline`` (``time.perf_counter()`` seconds).
        """
        if self.stopped:
            raise Retired()
        Overloaded.unless_room(self.depth, len(encodings), self.max_queue)
        loop = asyncio.get_running_loop()
        self._requests += 1
        pending = [_Pending(e, loop.create_future(), deadline, self._requests) for e in encodings]
        if self._out_of_queue:
            self._arrived_while_running += len(pending)
        self._queue.extend(pending)
        if not self.scheduler.run_lone(self):
            self.scheduler.wake()
        futures = [p.future for p in pending]
        try:  # one text (answered already if it ran at once): its future, without a gathering round
            rows = [await futures[0]] if len(futures) == 1 else await asyncio.gather(*futures)
        finally:
            for p in pending:  # a client that left: its texts still queued are dropped, not run
                if not p.future.done():
                    p.future.cancel()
        queued = max(p.started_at - p.queued_at for p in pending)
        in_model = time.perf_counter() - min(p.started_at for p in pending)
        return np.stack(rows), queued, in_model

    # -- what the scheduler asks (on the event loop) --------------------------------------------

    def has_work(self) -> bool:
        return bool(self._queue or self._pool or self._cohorts)

    def has_planned(self) -> bool:
        return bool(self._pool or self._cohorts)

    def wants_company(self) -> bool:
        """Only a few texts queued, more arriving while batches run: worth waiting ``max_wait_ms`` for more."""
        return (not self._cohorts and 0 < len(self._queue) and len(self._queue) + len(self._pool) < self.max_batch_size
                and self.max_wait_s > 0 and bool(self._arrived_while_running))

    def plan(self) -> None:
        """Everything queued that is still wanted, into the pool or cohorts; the rest answered or dropped.

        The texts of requests that fit one model call join the pool (whose turn comes after each call of a
        cohort); each larger request is a cohort of its own, in arrival order. So a sentence that arrives in
        the same planning round as a long document runs first, instead of last in the document's
        length-sorted batches.
        """
        window = [p for p in self._queue if self._wanted(p)]
        self._queue = []
        self._arrived_while_running = 0
        if not window:
            return
        by_request: dict[int, list[_Pending]] = {}
        for p in window:
            by_request.setdefault(p.request, []).append(p)
        small, large = [], []
        for texts in by_request.values():
            if self._fits_one_call(texts):
                small.extend(texts)
            else:
                large.append(texts)
        self._pool.add(small)
        for cohort in large:
            self._cohorts.add(self._batches(cohort))
        self._out_of_queue += len(window)

    def _fits_one_call(self, texts: list[_Pending]) -> bool:
        longest = max(len(p.encoding) for p in texts)
        return len(texts) <= self.max_batch_size and longest * len(texts) <= self.max_batch_tokens

    def _batches(self, cohort: list[_Pending]) -> list[list[_Pending]]:
        if not cohort:
            return []
        lengths = [len(p.encoding) for p in cohort]
        return [[cohort[i] for i in indices]
                for indices in plan_batches(lengths, self.max_batch_size, max_tokens=self.max_batch_tokens,
                                            call_cost=self.call_cost)]

    def next_batch(self) -> list | None:
        """The pool's next call, unless the pool had the last one and a cohort is waiting (then the cohort's)."""
        if self._pool and (self._cohorts and self._pool_went_last):
            self._pool_went_last = False
            batch = self._cohorts.next_batch()
        else:
            self._out_of_queue -= self._pool.retain(self._wanted)  # texts may wait in the pool for calls
            self._pool_went_last = bool(self._pool)
            batch = self._pool.next_batch() if self._pool else self._cohorts.next_batch()
        if batch is not None:
            self._in_model += 1
        return batch

    def is_short(self, batch: list[_Pending]) -> bool:
        """One text of at most :data:`SHORT_TOKENS` tokens: a call short enough to hold the event loop for."""
        return len(batch) == 1 and len(batch[0].encoding) <= SHORT_TOKENS

    def _wanted(self, p: _Pending) -> bool:
        """Whether a text is still to be run: not if its client left, or it is past its deadline (answered)."""
        if p.future.done():
            self._on_dropped("disconnected")
            return False
        if time.perf_counter() > p.deadline:
            p.future.set_exception(Expired("the request waited past its deadline and was not run"))
            self._on_dropped("timeout")
            return False
        return True

    # -- in a worker thread ------------------------------------------------------------------------

    def run(self, batch: list[_Pending], post: Callable[..., None]) -> None:
        """One planned batch; whatever happens, every text is answered and the accounting settles.

        ``post(callback, *args)`` hands each answer to the event loop: ``loop.call_soon_threadsafe`` from a
        worker thread, a call at once for a batch run on the loop's own thread.
        """
        try:
            self._run(batch, post)
        except Exception as exc:  # never let a worker die: fail what this batch still owes
            for p in batch:
                post(_settle, p.future, None, exc)
        finally:
            post(self._ran, len(batch))

    def _ran(self, count: int) -> None:
        self._out_of_queue -= count
        self._in_model -= 1

    def _run(self, window_batch: list[_Pending], post: Callable[..., None]) -> None:
        """One model call, its results sent back to the event loop."""
        # a client may have left since the window was taken: its texts are dropped here, unrun
        # (reading done() from this thread is a benign race: at worst a text runs for nobody)
        batch = [p for p in window_batch if not p.future.done()]
        for _ in range(len(window_batch) - len(batch)):
            self._on_dropped("disconnected")
        if not batch:
            return
        started = time.perf_counter()
        for p in batch:
            p.started_at = started
        encodings = [p.encoding for p in batch]
        try:
            logits = self._run_model(encodings)
        except Exception as exc:  # the batch fails, the server goes on
            for p in batch:
                post(_settle, p.future, None, exc)
            return
        self._on_batch(BatchStats.of(encodings, time.perf_counter() - started))
        for p, row in zip(batch, logits):
            post(_settle, p.future, row, None)


def _settle(future: asyncio.Future, result, error: Exception | None) -> None:
    if future.done():  # the client left meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
