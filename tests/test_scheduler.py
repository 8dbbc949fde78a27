"""The scheduler: its pure part, cohorts (no threads, no clock, no server); and which thread runs a batch."""

from __future__ import annotations

import asyncio
import threading
import time


from ortpipe.runtime import TextClassifier
from ortpipe.serve.batcher import SHORT_TOKENS, Batcher
from ortpipe.serve.scheduler import Cohorts


# -- the planner ----------------------------------------------------------------------------------

def test_a_new_cohort_goes_next_once_after_each_batch_of_an_older_one():
    cohorts = Cohorts()
    cohorts.add([["big", i] for i in range(4)])
    assert cohorts.next_batch() == ["big", 0]
    cohorts.add([["small"]])
    assert cohorts.next_batch() == ["small"]  # behind the one call that ran
    cohorts.add([["s2"]])
    cohorts.add([["s3"]])
    assert [cohorts.next_batch() for _ in range(5)] == [["big", 1], ["s2"], ["big", 2], ["s3"], ["big", 3]]
    assert cohorts.next_batch() is None and not cohorts


def test_drain_takes_every_batch_left():
    cohorts = Cohorts()
    cohorts.add([["a", 0], ["a", 1]])
    cohorts.add([["b", 0]])
    assert cohorts.next_batch() == ["a", 0]
    assert sorted(cohorts.drain()) == [["a", 1], ["b", 0]] and not cohorts and cohorts.next_batch() is None


def test_a_lone_short_text_runs_on_the_event_loop_thread_and_the_rest_in_a_worker(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1, spinning=False)
    threads: list = []

    def run_model(encodings):
        threads.append(threading.current_thread() is threading.main_thread())
        return clf.model(clf.tokenizer.collate(encodings))

    long_text = "word " * (SHORT_TOKENS + 8)

    async def main():
        batcher = Batcher(run_model, max_batch_size=64, max_batch_tokens=4096, max_wait_ms=0.0, max_queue=100)
        batcher.start()
        deadline = time.perf_counter() + 3600
        for texts in (["short"], [long_text], ["two", "texts"]):
            await batcher.submit(clf.tokenizer.encode(texts), deadline)
        await batcher.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=60))
    assert threads == [True, False, False]


def test_a_lone_request_runs_in_its_own_step_and_requests_read_together_still_batch(bert_bundle):
    """``run_lone``: with the server's word that a request is its only one, its short text runs inside ``submit``
    (before the scheduler's task has had a turn) and a longer call starts there; without it, texts queued in the
    same round share one call."""
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1, spinning=False)
    calls: list[int] = []

    def run_model(encodings):
        calls.append(len(encodings))
        return clf.model(clf.tokenizer.collate(encodings))

    async def main():
        batcher = Batcher(run_model, max_batch_size=64, max_batch_tokens=4096, max_wait_ms=0.0, max_queue=100)
        batcher.start()
        await asyncio.sleep(0)  # the scheduler's task is waiting for work
        deadline = time.perf_counter() + 3600
        lone = [True]
        batcher.scheduler.lone_request = lambda: lone[0]
        submitted = asyncio.ensure_future(batcher.submit(clf.tokenizer.encode(["alone"]), deadline))
        await asyncio.sleep(0)  # one step: submit ran (and, with run_lone, the model too)
        ran_within_its_step = list(calls)
        await submitted
        lone[0] = False  # two requests read in one round: neither may run alone
        await asyncio.gather(*(batcher.submit(clf.tokenizer.encode([text]), deadline) for text in ("one", "two")))
        lone[0] = True  # a lone request of two texts: its call starts in a worker within its step
        submitted = asyncio.ensure_future(batcher.submit(clf.tokenizer.encode(["two", "texts"]), deadline))
        await asyncio.sleep(0)
        started_within_its_step = batcher.scheduler.busy
        await submitted
        await batcher.stop()
        return ran_within_its_step, started_within_its_step

    assert asyncio.run(asyncio.wait_for(main(), timeout=60)) == ([1], True)
    assert calls == [1, 2, 2]
