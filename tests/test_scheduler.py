"""The scheduler's pure part: cohorts (no threads, no clock, no server)."""

from __future__ import annotations

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
