"""The one batching loop: length-sorted batches, results back in input order.

Every entry point that classifies many texts (``TextClassifier.__call__``,
the CLI, the benchmarks, Ray's actors and replicas) goes through
:func:`run_in_batches`. The server's dynamic batcher, which runs a window's
batches on several worker threads at once, plans them with the same
:func:`plan_batches`.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from ortpipe.runtime.errors import InputError

Item = TypeVar("Item")
# What one model call costs beyond its padded tokens, in tokens' worth of compute, on a CPU: the call's fixed
# work (every op dispatched once, the threads woken). Fitted on Zen 4 (calls of 1-16 rows × 8-64 tokens,
# cost = c0 + c1 · rows · longest): 2-6 tokens on one thread, 11-13 on two, for the int8 and optimized MiniLM.
# A padded token costs as much as a real one, so a call that pads more than this is worth cutting in two.
CPU_CALL_COST_TOKENS = 16
Result = TypeVar("Result")


def check_batch_size(batch_size: int, name: str = "batch_size") -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"{name} must be a positive int, got {batch_size!r}")
    return batch_size


def plan_batches(lengths: Sequence[int], batch_size: int, sort_by_length: bool = True,
                 max_tokens: int | None = None, call_cost: int | None = None) -> list[list[int]]:
    """Split item indices into batches, longest items first when sorting.

    Sorting puts texts of similar length together, so each batch is padded
    little; the sort is stable, so equal lengths keep their input order.
    With ``max_tokens``, a batch also stops before its padded size (rows ×
    longest row) would pass that budget; an item longer than the budget
    still gets a batch of its own.

    With ``call_cost`` (what a call costs beyond its padded tokens, in tokens:
    :data:`CPU_CALL_COST_TOKENS` on a CPU) and sorting, the cuts are the
    cheapest ones, not the fullest: a few texts of mixed lengths (a server's
    batch) are cut where a call costs less than the padding it saves.
    """
    check_batch_size(batch_size)
    order = list(range(len(lengths)))
    if sort_by_length:
        order.sort(key=lambda i: -lengths[i])
        if call_cost is not None:
            return [order[start:end] for start, end in
                    cheapest_cuts([lengths[i] for i in order], batch_size, max_tokens, call_cost)]
    if max_tokens is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        wider = max(longest, lengths[index])
        if current and (len(current) == batch_size or wider * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, wider = [], lengths[index]
        current.append(index)
        longest = wider
    if current:
        batches.append(current)
    return batches


def cheapest_cuts(longest_first: Sequence[int], batch_size: int, max_tokens: int | None,
                  call_cost: int) -> list[tuple[int, int]]:
    """The (start, end) runs of ``longest_first`` (lengths, sorted descending) whose total cost, per run
    ``call_cost + rows × its first length``, is least, within ``batch_size`` rows and ``max_tokens`` padded
    tokens per run (an item over the budget alone). Dynamic programming over the run ending at each item."""
    count = len(longest_first)
    best, cut = [0] + [0] * count, [0] * (count + 1)
    for end in range(1, count + 1):
        cheapest, where = None, end - 1
        for start in range(end - 1, max(end - batch_size, 0) - 1, -1):
            padded = (end - start) * longest_first[start]
            if start < end - 1 and max_tokens is not None and padded > max_tokens:
                break  # an earlier start only adds rows and length
            cost = best[start] + call_cost + padded
            if cheapest is None or cost < cheapest:
                cheapest, where = cost, start
        best[end], cut[end] = cheapest, where
    runs, end = [], count
    while end:
        runs.append((cut[end], end))
        end = cut[end]
    return runs[::-1]


def run_in_batches(items: Sequence[Item], lengths: Sequence[int], batch_size: int,
                   run_batch: Callable[[list[Item]], Sequence[Result]],
                   sort_by_length: bool = True, max_tokens: int | None = None,
                   call_cost: int | None = None) -> list[Result]:
    """Run ``run_batch`` over batches of ``items`` and return its results in input order.

    Args:
        items: anything ``run_batch`` understands (here: tokenizer encodings).
        lengths: the cost of each item (token count), used to sort.
        batch_size: items per call of ``run_batch``.
        run_batch: takes a list of items, returns one result per item, in order.
        sort_by_length: group items of similar length (the results' order is kept either way).
        max_tokens: padded tokens per batch at most (see :func:`plan_batches`).
        call_cost: cut where a call costs less than the padding it saves (see :func:`plan_batches`).
    """
    results: list = [None] * len(items)
    for batch in plan_batches(lengths, batch_size, sort_by_length, max_tokens, call_cost):
        outputs = run_batch([items[i] for i in batch])
        if len(outputs) != len(batch):
            raise RuntimeError(f"run_batch returned {len(outputs)} results for {len(batch)} items")
        for index, output in zip(batch, outputs):
            results[index] = output
    return results
