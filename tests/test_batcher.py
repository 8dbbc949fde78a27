"""The server's dynamic batcher, driven directly with the tiny model (no HTTP)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from ortpipe.runtime import TextClassifier
from ortpipe.serve.batcher import Batcher, Expired, Overloaded

FAR = 3600.0


@pytest.fixture(scope="module")
def clf(bert_bundle):
    return TextClassifier.load(bert_bundle, variant="optimized", threads=1, spinning=False)


def _batcher(clf, calls: list, **limits) -> Batcher:
    def run_model(encodings):
        calls.append(len(encodings))
        return clf.model(clf.tokenizer.collate(encodings))

    settings = {"max_batch_size": 64, "max_batch_tokens": 1024, "max_wait_ms": 0.0, "max_queue": 100, **limits}
    return Batcher(run_model, **settings)


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=60))


def test_logits_are_those_of_the_model_in_input_order(clf):
    texts = ["a much longer text than the others, with many more tokens in it", "short", "mid sized text"]

    async def main():
        batcher = _batcher(clf, [])
        batcher.start()
        logits, queued, in_model = await batcher.submit(clf.tokenizer.encode(texts), time.perf_counter() + FAR)
        await batcher.stop()
        return logits, queued, in_model

    logits, queued, in_model = _run(main())
    expected = np.stack([clf.infer(clf.tokenize(t))[0] for t in texts])
    np.testing.assert_array_equal(logits, expected)  # float variant: the same bits however batched
    assert queued >= 0 and in_model > 0


def test_a_lone_request_does_not_wait_for_company(clf):
    async def main():
        batcher = _batcher(clf, [], max_wait_ms=5000.0)
        batcher.start()
        started = time.perf_counter()
        await batcher.submit(clf.tokenizer.encode(["alone"]), time.perf_counter() + FAR)
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert _run(main()) < 2.5  # the 5 s wait is only for texts arriving while a batch runs


def test_texts_queued_together_share_a_model_call(clf):
    calls: list = []

    async def main():
        batcher = _batcher(clf, calls)
        deadline = time.perf_counter() + FAR
        jobs = [asyncio.ensure_future(batcher.submit(clf.tokenizer.encode([f"text {i}"]), deadline))
                for i in range(10)]
        await asyncio.sleep(0)  # all ten are queued before the batcher starts
        batcher.start()
        await asyncio.gather(*jobs)
        await batcher.stop()

    _run(main())
    assert calls == [10]


def test_a_full_queue_refuses_and_a_late_text_is_never_run(clf):
    calls: list = []

    async def main():
        batcher = _batcher(clf, calls, max_queue=2)
        with pytest.raises(Overloaded, match="queue limit of 2"):
            await batcher.submit(clf.tokenizer.encode(["a", "b", "c"]), time.perf_counter() + FAR)
        batcher.start()
        with pytest.raises(Expired):
            await batcher.submit(clf.tokenizer.encode(["late"]), time.perf_counter() - 1)
        await batcher.stop()

    _run(main())
    assert calls == []


def test_texts_of_a_client_that_left_are_dropped_unrun(clf):
    calls, dropped = [], []

    async def main():
        batcher = _batcher(clf, calls)
        batcher._on_dropped = dropped.append
        job = asyncio.ensure_future(batcher.submit(clf.tokenizer.encode(["a", "b", "c"]), time.perf_counter() + FAR))
        await asyncio.sleep(0)  # queued
        job.cancel()  # what the server does when the client disconnects
        await asyncio.sleep(0)
        batcher.start()
        await asyncio.sleep(0.05)
        await batcher.stop()

    _run(main())
    assert calls == [] and dropped == ["disconnected"] * 3


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on(clf):
    async def main():
        failing = {"on": True}

        def run_model(encodings):
            if failing["on"]:
                raise RuntimeError("model exploded")
            return clf.model(clf.tokenizer.collate(encodings))

        batcher = Batcher(run_model, 64, 1024, 0.0, 100)
        batcher.start()
        with pytest.raises(RuntimeError, match="model exploded"):
            await batcher.submit(clf.tokenizer.encode(["x"]), time.perf_counter() + FAR)
        failing["on"] = False
        logits, _, _ = await batcher.submit(clf.tokenizer.encode(["y"]), time.perf_counter() + FAR)
        await batcher.stop()
        return logits

    assert _run(main()).shape == (1, 3)


def test_spinning_off_computes_the_same(bert_bundle, clf):
    spinning = TextClassifier.load(bert_bundle, variant="optimized", threads=1)
    assert spinning("some text", top_k=None) == clf("some text", top_k=None)


def test_spinning_off_stops_the_threads_as_a_call_returns_but_lets_them_spin_within_it(clf):
    options = clf.model.session.get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # unset: ONNX Runtime's default, on
        options.get_session_config_entry("session.intra_op.allow_spinning")


def test_batches_of_one_window_run_side_by_side_on_their_own_threads(clf):
    barrier = threading.Barrier(2, timeout=20)  # passes only if both batches are in the model at once
    threads, alone = set(), []
    texts = ["first text", "second text", "a third one", "and a fourth"]

    async def main():
        batcher = None

        def run_model(encodings):
            alone.append(batcher.alone)
            threads.add(threading.get_ident())
            barrier.wait()
            return clf.model(clf.tokenizer.collate(encodings))

        batcher = Batcher(run_model, 2, 1024, 0.0, 100, concurrent_batches=2)
        deadline = time.perf_counter() + FAR
        jobs = [asyncio.ensure_future(batcher.submit(clf.tokenizer.encode([text]), deadline)) for text in texts]
        await asyncio.sleep(0)  # one window of four texts: two batches of two
        batcher.start()
        rows = await asyncio.gather(*jobs)
        await batcher.stop()
        return np.concatenate([logits for logits, _, _ in rows])

    logits = _run(main())
    np.testing.assert_array_equal(logits, np.stack([clf.infer(clf.tokenize(t))[0] for t in texts]))
    assert len(threads) == 2 and alone == [False, False]


def test_a_batch_by_itself_is_alone(clf):
    alone = []

    async def main():
        batcher = None

        def run_model(encodings):
            alone.append(batcher.alone)
            return clf.model(clf.tokenizer.collate(encodings))

        batcher = Batcher(run_model, 64, 1024, 0.0, 100, concurrent_batches=2)
        batcher.start()
        for text in ("one", "then another"):
            await batcher.submit(clf.tokenizer.encode([text]), time.perf_counter() + FAR)
        await batcher.stop()

    _run(main())
    assert alone == [True, True]


def test_a_sentence_planned_with_long_requests_runs_first(clf):
    """Issue 27, case 8: a request that fits one call is planned ahead of larger ones queued in the same round."""
    long_text = " ".join(["a long review that goes on and on about the plot"] * 8)

    async def main():
        batcher = _batcher(clf, [], max_batch_size=4, max_batch_tokens=512, max_queue=1000)
        deadline = time.perf_counter() + FAR
        big = [asyncio.ensure_future(batcher.submit(clf.tokenizer.encode([long_text] * 12), deadline))
               for _ in range(3)]
        small = asyncio.ensure_future(batcher.submit(clf.tokenizer.encode(["fine"]), deadline))
        await asyncio.sleep(0)  # every submit has queued its texts; nothing has been planned yet
        batcher.plan()
        first = batcher.next_batch()
        order = [first] + [batch for batch in iter(batcher.next_batch, None)]
        for task in (*big, small):
            task.cancel()
        return first, order

    first, order = _run(main())
    assert [len(p.encoding) for p in first] == [len(clf.tokenizer.encode(["fine"])[0])]
    assert sum(len(batch) for batch in order) == 3 * 12 + 1


@pytest.mark.parametrize("call_cost, calls_made", [(None, 1), (16, 2)])
def test_a_cohort_of_mixed_lengths_is_cut_where_a_call_costs_less_than_its_padding(clf, call_cost, calls_made):
    texts = ["a very long text " * 12, "short", "tiny", "also short"]

    async def main():
        calls: list = []
        batcher = _batcher(clf, calls, call_cost=call_cost)
        batcher.start()
        logits, _, _ = await batcher.submit(clf.tokenizer.encode(texts), time.perf_counter() + FAR)
        await batcher.stop()
        return calls, logits

    calls, logits = _run(main())
    assert len(calls) == calls_made and sum(calls) == len(texts)
    np.testing.assert_array_equal(logits, np.stack([clf.infer(clf.tokenize(t))[0] for t in texts]))


def test_a_cpu_model_prices_its_calls_for_the_planner(clf):
    from ortpipe.runtime.batching import CPU_CALL_COST_TOKENS

    assert clf.provider == "cpu" and clf.call_cost_tokens == CPU_CALL_COST_TOKENS


def test_a_text_cut_from_a_call_waits_in_the_pool_and_shares_the_next_call_with_a_newcomer(clf):
    """Cut from its request's long text, a short text is planned again with the short text that came next."""
    long_text, short, newcomer = "a very long text " * 12, "short", "tiny"

    async def main():
        batcher = _batcher(clf, [], call_cost=16)
        deadline = time.perf_counter() + FAR
        first = asyncio.ensure_future(batcher.submit(clf.tokenizer.encode([long_text, short]), deadline))
        await asyncio.sleep(0)
        batcher.plan()
        calls = [batcher.next_batch()]  # the long text alone: the oldest text's call
        second = asyncio.ensure_future(batcher.submit(clf.tokenizer.encode([newcomer]), deadline))
        await asyncio.sleep(0)
        batcher.plan()
        calls.append(batcher.next_batch())
        leftover = batcher.next_batch()
        for task in (first, second):
            task.cancel()
        return calls, leftover

    calls, leftover = _run(main())
    lengths = [[len(p.encoding) for p in call] for call in calls]
    assert lengths == [[len(clf.tokenizer.encode([long_text])[0])],
                       [len(clf.tokenizer.encode([short])[0]), len(clf.tokenizer.encode([newcomer])[0])]]
    assert leftover is None


def test_a_text_left_in_the_pool_past_its_deadline_is_answered_and_never_run(clf):
    dropped: list = []

    async def main():
        batcher = Batcher(lambda encodings: None, max_batch_size=64, max_batch_tokens=1024, max_wait_ms=0.0,
                          max_queue=100, on_dropped=dropped.append, call_cost=16)
        request = asyncio.ensure_future(batcher.submit(
            clf.tokenizer.encode(["a very long text " * 12, "short"]), time.perf_counter() + 0.05))
        await asyncio.sleep(0)
        batcher.plan()
        taken = batcher.next_batch()  # the long text; "short" waits in the pool
        await asyncio.sleep(0.1)
        after = batcher.next_batch()
        with pytest.raises(Expired):
            await request
        return taken, after, batcher.depth

    taken, after, depth = _run(main())
    assert len(taken) == 1 and after is None and dropped == ["timeout"]
    assert depth == 1  # only the long text, taken and never run here, is still counted
