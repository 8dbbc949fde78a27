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
Result = TypeVar("Result")


def check_batch_size(batch_size: int, name: str = "batch_size") -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"{name} must be a positive int, got {batch_size!r}")
    return batch_size


def plan_batches(lengths: Sequence[int], batch_size: int, sort_by_length: bool = True,
                 max_tokens: int | None = None) -> list[list[int]]:
    """Split item indices into batches, longest items first when sorting.

    Sorting puts texts of similar length together, so each batch is padded
    little; the sort is stable, so equal lengths keep their input order.
    With ``max_tokens``, a batch also stops before its padded size (rows ×
    longest row) would pass that budget; an item longer than the budget
    still gets a batch of its own.
    """
    check_batch_size(batch_size)
    order = list(range(len(lengths)))
    if sort_by_length:
        order.sort(key=lambda i: -lengths[i])
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


def run_in_batches(items: Sequence[Item], lengths: Sequence[int], batch_size: int,
                   run_batch: Callable[[list[Item]], Sequence[Result]],
                   sort_by_length: bool = True, max_tokens: int | None = None) -> list[Result]:
    """Run ``run_batch`` over batches of ``items`` and return its results in input order.

    Args:
        items: anything ``run_batch`` understands (here: tokenizer encodings).
        lengths: the cost of each item (token count), used to sort.
        batch_size: items per call of ``run_batch``.
        run_batch: takes a list of items, returns one result per item, in order.
        sort_by_length: group items of similar length (the results' order is kept either way).
        max_tokens: padded tokens per batch at most (see :func:`plan_batches`).
    """
    results: list = [None] * len(items)
    for batch in plan_batches(lengths, batch_size, sort_by_length, max_tokens):
        outputs = run_batch([items[i] for i in batch])
        if len(outputs) != len(batch):
            raise RuntimeError(f"run_batch returned {len(outputs)} results for {len(batch)} items")
        for index, output in zip(batch, outputs):
            results[index] = output
    return results
