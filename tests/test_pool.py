"""The pool of small requests' texts (pure: no threads, no clock, no model)."""

from __future__ import annotations

from ortpipe.serve.pool import Pool


def _by_length(texts: list[str]) -> list[list[str]]:
    """A stand-in planner: one call per text length, longest first (the runtime's planner sorts the same way)."""
    lengths = sorted({len(t) for t in texts}, reverse=True)
    return [[t for t in texts if len(t) == n] for n in lengths]


def test_each_call_is_the_planned_one_that_holds_the_oldest_text():
    pool = Pool(_by_length, planned_at_once=64)
    pool.add(["b", "aaa", "d", "ccc"])
    assert pool.next_batch() == ["b", "d"]  # not the longest first: the oldest text's call
    assert len(pool) == 2 and pool.next_batch() == ["aaa", "ccc"]
    assert pool.next_batch() is None and not pool


def test_texts_left_over_are_planned_again_with_newcomers():
    pool = Pool(_by_length, planned_at_once=64)
    pool.add(["xx", "y"])
    assert pool.next_batch() == ["xx"]
    pool.add(["z", "ww"])  # arrived during the call
    assert pool.next_batch() == ["y", "z"]  # the leftover shares its call with a newcomer of its length
    assert pool.next_batch() == ["ww"]


def test_a_text_never_waits_behind_later_ones():
    pool = Pool(_by_length, planned_at_once=64)
    pool.add(["bbb", "a"])
    served = []
    for step in range(4):  # a steady stream of texts as long as the first keeps arriving
        served.append(pool.next_batch())
        pool.add([f"{step}xx"])
    assert served[:2] == [["bbb"], ["a"]]  # longest-first would have kept "a" waiting behind every newcomer
    assert served[2:] == [["0xx", "1xx"], ["2xx"]]


def test_only_the_oldest_are_planned_together():
    planned = []

    def plan(texts):
        planned.append(list(texts))
        return _by_length(texts)

    pool = Pool(plan, planned_at_once=2)
    pool.add(["a", "bb", "c"])
    assert pool.next_batch() == ["a"] and planned[-1] == ["a", "bb"]  # "c" was not planned this time


def test_retain_answers_what_is_no_longer_wanted_and_drain_takes_the_rest():
    pool = Pool(_by_length, planned_at_once=64)
    pool.add(["keep", "gone", "kept"])
    assert pool.retain(lambda text: text.startswith("k")) == 1
    assert pool.drain() == ["keep", "kept"] and not pool and pool.next_batch() is None
