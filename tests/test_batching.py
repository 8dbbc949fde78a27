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


def test_a_token_budget_counts_padding():
    # sorted: 10, 9, 4, 3, 2; budget 20 padded tokens: [10, 9] = 20, then [4, 3, 2] = 12
    assert plan_batches([4, 10, 2, 9, 3], batch_size=8, max_tokens=20) == [[1, 3], [0, 4, 2]]
    assert plan_batches([4, 10, 2, 9, 3], batch_size=2, max_tokens=100) == [[1, 3], [0, 4], [2]]


def test_an_item_over_the_budget_gets_a_batch_of_its_own():
    assert plan_batches([50, 3, 3], batch_size=8, max_tokens=10) == [[0], [1, 2]]


def test_unsorted_batches_respect_the_budget_too():
    # in input order: 2, 2, 9 would pad to 27 > 20, so 9 starts a new batch
    assert plan_batches([2, 2, 9, 1], batch_size=8, sort_by_length=False, max_tokens=20) == [[0, 1], [2, 3]]
