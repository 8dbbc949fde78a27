"""The scheduler: one set of model workers for every model a server holds, fair across requests and models.

Each model's :class:`~ortpipe.serve.batcher.Batcher` owns its queue and
plans what is queued: the texts of requests that fit one call into its
:class:`~ortpipe.serve.pool.Pool`, each larger request into a *cohort* (sorted
by length and cut into model calls by the runtime's planner). The scheduler
owns the worker threads: whenever one is free it asks the models in turn
(round-robin over those with work) for their next batch, and each model
answers from its pool, whose turn comes after each call of a cohort, or its
cohorts (:meth:`Cohorts.next_batch`): a cohort not yet served goes first,
once after each batch of an older one, so a one-sentence request waits for
at most the call that is running and one more, however large the requests
ahead of it; served cohorts take turns, so a large request is never starved
either. Model calls from all models run on these workers, so
N models share the cores instead of each starting threads of its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol


class Schedulable(Protocol):
    """What the scheduler needs of a model's batcher."""

    max_wait_s: float

    def has_work(self) -> bool: ...

    def has_planned(self) -> bool: ...

    def wants_company(self) -> bool: ...

    def plan(self) -> None: ...

    def next_batch(self) -> list | None: ...

    def is_short(self, batch: list) -> bool: ...

    def run(self, batch: list, post: Callable[..., None]) -> None: ...


class Cohorts:
    """Planned batches grouped by the window of arrivals they came from.

    ``next_batch`` takes the oldest cohort never served, unless the last batch was such a cohort taken ahead
    of a served one (then a served cohort's turn comes first); served cohorts take turns. Pure (no threads,
    no clock), for the unit tests.
    """

    def __init__(self):
        self._fresh: deque[deque[list]] = deque()  # cohorts not yet served, oldest first
        self._served: deque[deque[list]] = deque()  # served cohorts with batches left, in turn
        self._jumped = False

    def add(self, batches: list[list]) -> None:
        if batches:
            self._fresh.append(deque(batches))

    def __bool__(self) -> bool:
        return bool(self._fresh or self._served)

    def drain(self) -> list[list]:
        """Every batch left, taken out (the model is stopping)."""
        left = [batch for cohort in (*self._fresh, *self._served) for batch in cohort]
        self._fresh.clear()
        self._served.clear()
        return left

    def next_batch(self) -> list | None:
        take_fresh = bool(self._fresh) and (not self._served or not self._jumped)
        source = self._fresh if take_fresh else self._served
        if not source:
            return None
        self._jumped = take_fresh and bool(self._served)  # a new cohort went ahead of a served one
        cohort = source.popleft()
        batch = cohort.popleft()
        if cohort:
            self._served.append(cohort)
        return batch


class Scheduler:
    """Worker threads shared by every registered batcher; batches are taken round-robin over the batchers.

    Args:
        workers: model calls at once (``--concurrent-batches``).
    """

    def __init__(self, workers: int = 1):
        self.workers = self._free = workers
        self._batchers: list[Schedulable] = []
        self._turn = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ortpipe-infer")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Future] = set()
        # set by ``ortpipe serve``: whether the request being handled is the only one the server holds (uvicorn's
        # request tasks); None (an app mounted elsewhere, Ray Serve): never known, so never run from submit
        self.lone_request: Callable[[], bool] | None = None

    @property
    def alone(self) -> bool:
        """Whether a batch starting now runs alone: no other worker busy, no planned batch about to start."""
        return self._free >= self.workers - 1 and not any(b.has_planned() for b in self._batchers)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def add(self, batcher: Schedulable) -> None:
        if batcher not in self._batchers:
            self._batchers.append(batcher)

    def remove(self, batcher: Schedulable) -> None:
        if batcher in self._batchers:
            self._batchers.remove(batcher)

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def run_lone(self, batcher: Schedulable) -> bool:
        """Plan and start ``batcher``'s texts now, in the request's own step of the event loop, when that request is
        the server's only one, every worker is free and nothing else is queued (the scheduler's task would do the
        same one round later; a short call then runs right here); False: not that case, wake the task.

        Only for a lone request: requests read in the same round as this one have not queued yet, and running
        each at once would end batching (measured at 64 clients: 1.29× the CPU).
        """
        if (self.lone_request is None or self._task is None or self._free != self.workers
                or any(b.has_work() for b in self._batchers if b is not batcher) or not self.lone_request()):
            return False
        batcher.plan()
        batch = batcher.next_batch()
        if batch is not None:  # None: planning answered it (past its deadline) or dropped it (its client left)
            self._start(batcher, batch)
        if batcher.has_work():  # more of its batches: the task starts them on the other workers
            self.wake()
        return True

    def start(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._wakeup.set()  # texts may have been queued before the start
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop taking batches; wait for the running ones; end the threads."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.settle()
        self._pool.shutdown(wait=True)

    async def settle(self) -> None:
        """Wait for the batches running now."""
        if self._running:
            await asyncio.wait(set(self._running))

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._free and any(b.has_work() for b in self._batchers):
                waiting = [b for b in self._batchers if b.wants_company()]
                if waiting and self.busy and not any(b.has_work() and not b.wants_company() for b in self._batchers):
                    await asyncio.sleep(max(b.max_wait_s for b in waiting))  # under load: a moment for more company
                for batcher in list(self._batchers):
                    batcher.plan()
                picked = self._pick()
                if picked is None:
                    break
                self._start(*picked)

    def _pick(self) -> tuple[Schedulable, list] | None:
        """The next batch, round-robin over the batchers (each answers from its own cohorts)."""
        count = len(self._batchers)
        for step in range(count):
            batcher = self._batchers[(self._turn + step) % count]
            batch = batcher.next_batch()
            if batch is not None:
                self._turn = (self._turn + step + 1) % count
                return batcher, batch
        return None

    def _start(self, batcher: Schedulable, batch: list) -> None:
        loop = asyncio.get_running_loop()
        self._free -= 1
        if self._free == self.workers - 1 and batcher.is_short(batch) and not any(b.has_work() for b in self._batchers):
            # a short call with nothing else to do runs here: the hop to a worker thread and back cost 0.13 ms of
            # p50 and 4 % of the CPU at one client (2 cores, int8); what arrives meanwhile waits a few ms at most
            self._run(batcher, batch, _at_once)
            return
        running = loop.run_in_executor(self._pool, self._run, batcher, batch, loop.call_soon_threadsafe)
        self._running.add(running)
        running.add_done_callback(self._running.discard)

    def _run(self, batcher: Schedulable, batch: list, post: Callable[..., None]) -> None:
        """In a worker (or at once on the loop): the batch, then the worker counted free, posted to the loop right
        behind the batch's answers, so a request woken by its answer already sees the worker free (``alone``
        holds then)."""
        try:
            batcher.run(batch, post)
        finally:
            post(self._freed)

    def _freed(self) -> None:
        self._free += 1
        self._wakeup.set()


def _at_once(callback: Callable[..., None], *args) -> None:
    """What ``loop.call_soon_threadsafe`` is to a worker thread, for a batch run on the event loop's own thread."""
    callback(*args)
