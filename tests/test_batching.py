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


def _cost(batches: list[list[int]], lengths: list[int], call_cost: int) -> int:
    return sum(call_cost + len(batch) * max(lengths[i] for i in batch) for batch in batches)


def _cheapest_by_search(lengths: list[int], batch_size: int, max_tokens: int | None, call_cost: int) -> int:
    """The least cost over every way to cut the longest-first order into runs (exhaustive: small inputs)."""
    ordered = sorted(lengths, reverse=True)
    best = None
    for mask in range(2 ** (len(ordered) - 1)):  # bit k set: a cut after item k
        runs, start = [], 0
        for k in range(len(ordered)):
            if k == len(ordered) - 1 or mask >> k & 1:
                runs.append(ordered[start:k + 1])
                start = k + 1
        if any(len(r) > batch_size or (len(r) > 1 and max_tokens is not None and len(r) * r[0] > max_tokens)
               for r in runs):
            continue
        cost = sum(call_cost + len(r) * r[0] for r in runs)
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_cheapest_cuts_cost_what_an_exhaustive_search_finds(seed):
    import random

    rng = random.Random(seed)
    lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 11))]
    batch_size, max_tokens, call_cost = rng.choice([2, 4, 64]), rng.choice([None, 120, 512]), rng.choice([2, 16, 40])
    batches = plan_batches(lengths, batch_size, max_tokens=max_tokens, call_cost=call_cost)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(len(batch) <= batch_size for batch in batches)
    assert all(len(b) == 1 or max_tokens is None or len(b) * max(lengths[i] for i in b) <= max_tokens for b in batches)
    assert _cost(batches, lengths, call_cost) == _cheapest_by_search(lengths, batch_size, max_tokens, call_cost)


def test_a_few_texts_of_mixed_lengths_are_cut_where_padding_costs_more_than_a_call():
    lengths = [12, 55, 20, 40, 15, 30, 24]  # a server's batch: 7 sentences as they arrived
    greedy = plan_batches(lengths, 64, max_tokens=512)
    cheapest = plan_batches(lengths, 64, max_tokens=512, call_cost=16)
    assert len(greedy) == 1 and len(cheapest) > 1
    assert _cost(cheapest, lengths, 16) < _cost(greedy, lengths, 16)
    assert cheapest[0] == [1]  # the longest alone: padding six short texts to 55 tokens costs more than a call


def test_equal_lengths_and_costly_calls_keep_batches_full():
    assert plan_batches([7] * 10, 4, call_cost=16) == plan_batches([7] * 10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                                      [8, 9]]
    lengths = [5, 50, 9, 31, 2, 17]  # calls dearer than any padding: as few calls as the fullest cuts, padded less
    assert plan_batches(lengths, 4, call_cost=10 ** 9) == [[1, 3], [5, 2, 0, 4]]
    assert len(plan_batches(lengths, 4)) == 2


def test_unsorted_plans_keep_fixed_cuts_whatever_the_call_cost():
    assert plan_batches([1, 50, 1, 50], 2, sort_by_length=False, call_cost=1) == [[0, 1], [2, 3]]
