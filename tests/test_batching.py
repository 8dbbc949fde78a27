"""The one batching loop."""

from __future__ import annotations

import pytest

from ortpipe.runtime import InputError
from ortpipe.runtime.batching import plan_batches, run_in_batches


def test_plan_sorts_longest_first_and_is_stable():
    assert plan_batches([1, 5, 3, 5, 2], batch_size=2) == [[1, 3], [2, 4], [0]]
    assert plan_batches([1, 5, 3], batch_size=2, sort_by_length=False) == [[0, 1], [2]]


def test_results_come_back_in_input_order():
    items = ["aaa", "a", "aaaaa", "aa"]
    seen_batches = []

    def run(batch):
        seen_batches.append(batch)
        return [s.upper() for s in batch]

    assert run_in_batches(items, [len(s) for s in items], 3, run) == ["AAA", "A", "AAAAA", "AA"]
    assert seen_batches == [["aaaaa", "aaa", "aa"], ["a"]]


def test_a_batch_returning_the_wrong_count_is_caught():
    with pytest.raises(RuntimeError, match="returned 0 results for 2 items"):
        run_in_batches(["a", "b"], [1, 1], 2, lambda batch: [])


@pytest.mark.parametrize("size", [0, -3, 2.0, None])
def test_bad_batch_size(size):
    with pytest.raises(InputError):
        plan_batches([1], size)
