"""One classification call, in three parts that every entry point shares.

    options = CallOptions.parse(clf, top_k=…, function_to_apply=…, window=…)   # checked once, one spelling
    plan = plan_rows(clf.tokenizer, items, options)   # rows: encodings, or windows tagged with their text
    logits = executor(plan.rows)                      # the batching loop | the server's batcher | a Ray batch
    results = plan.finish(logits, clf.labels)         # by text: aggregate → function → labels → windows

Python (``TextClassifier.__call__``), files, Ray Data, Ray Serve and the server each build a
:class:`CallOptions` from their own spelling (an edge's only job) and hand it on; the executor returns
logits only; :meth:`Plan.finish` is the one post-processing step. The output's outer shape (a single
text's answer alone or in a list) is each protocol's own and stays at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ortpipe.runtime.batching import check_batch_size
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.postprocess import apply_function, resolve_function
from ortpipe.runtime.predict import best_label, check_top_k, top_labels
from ortpipe.runtime.windows import WindowedTexts, WindowOptions, attach_windows, split_texts

UNSET: Any = object()  # top_k left out: the pipeline's one ``{'label', 'score'}`` per text
ALL = "all"  # the spelling of "every label" where None cannot say it (files, Ray, the CLI)


@dataclass(frozen=True)
class ModelFacts:
    """What options are checked against: the model's task and labels, its window rule, its memory's token cap."""

    problem_type: str
    num_labels: int
    windowing: Callable[..., WindowOptions | None]  # ``TextClassifier.window_options``
    max_batch_tokens: int | None = None

    @classmethod
    def of(cls, clf) -> "ModelFacts":
        """The facts of a :class:`~ortpipe.runtime.TextClassifier`."""
        manifest = clf.manifest
        return cls(manifest.problem_type, manifest.num_labels, clf.window_options, clf.memory.max_batch_tokens)


@dataclass(frozen=True)
class CallOptions:
    """A call's checked options.

    ``top_k``: labels per text, best first (None: every label); ``one_label``: the pipeline's default
    shape (``top_k`` left out), one ``{'label', 'score'}`` per text instead of a list.
    """

    function: str
    top_k: int | None = None
    one_label: bool = True
    truncation: bool = True
    truncation_direction: str = "right"
    windows: WindowOptions | None = None
    batch_size: int | None = None  # None: the executor's default
    sort_by_length: bool = True
    max_batch_tokens: int | None = None

    @classmethod
    def parse(cls, model, *, top_k: Any = UNSET, function_to_apply: str | None = None, batch_size: int | None = None,
              truncation: bool = True, truncation_direction: str = "right", sort_by_length: bool = True,
              max_batch_tokens: Any = UNSET, window: Any = None, stride: Any = None, aggregate: Any = None,
              return_windows: Any = False, windows: Any = UNSET) -> "CallOptions":
        """Check a call's options against ``model`` (a :class:`ModelFacts`, or a classifier).

        ``top_k``: left out (one label per text), None or ``"all"`` (every label), or an int.
        ``max_batch_tokens``: left out for the memory setting's cap (512 with ``lean``), None for none.
        ``windows``: window settings an edge has checked already (the server's own rules), instead of
        ``window``, ``stride``, ``aggregate`` and ``return_windows``.

        Raises:
            InputError: the first option that is wrong, named.
        """
        facts = model if isinstance(model, ModelFacts) else ModelFacts.of(model)
        one_label = top_k is UNSET
        if not one_label:
            top_k = None if top_k == ALL else top_k
            check_top_k(top_k, facts.num_labels)
        if batch_size is not None:
            check_batch_size(batch_size)
        if max_batch_tokens is UNSET:
            max_batch_tokens = facts.max_batch_tokens
        elif max_batch_tokens is not None:
            check_batch_size(max_batch_tokens, "max_batch_tokens")
        if not isinstance(truncation_direction, str) or truncation_direction.lower() not in ("right", "left"):
            raise InputError(f"truncation_direction must be 'right' or 'left', got {truncation_direction!r}")
        if windows is UNSET:
            windows = facts.windowing(window, stride, aggregate, return_windows, truncation)
        return cls(resolve_function(function_to_apply, facts.problem_type, facts.num_labels),
                   None if one_label else top_k, one_label, truncation, truncation_direction.lower(), windows,
                   batch_size, sort_by_length, max_batch_tokens)


@dataclass
class Plan:
    """A call's rows, each tagged with its text (windows: ``split`` says how many each text has)."""

    rows: list
    options: CallOptions
    split: WindowedTexts | None = None
    truncated: int = 0  # texts cut to the model's limit (windows off, truncation on)

    @property
    def lengths(self) -> list[int]:
        """Each row's tokens, for the planner's length sort and token budget."""
        return [len(row) for row in self.rows]

    def finish(self, logits: np.ndarray, labels: Sequence[str]) -> list:
        """Per text, in input order: its rows' logits aggregated, the function applied, labelled, shaped."""
        options = self.options
        logits = np.asarray(logits, dtype=np.float32)
        per_text = logits if self.split is None else self.split.aggregate(logits, options.windows.aggregate)
        scores = apply_function(per_text, options.function)
        results = best_label(scores, labels) if options.one_label else top_labels(scores, labels, options.top_k)
        if self.split is None or not options.windows.return_windows:
            return results
        details = self.split.details(apply_function(logits, options.function), labels)
        return [attach_windows(result, own) for result, own in zip(results, details)]


def plan_rows(tokenizer, items: list, options: CallOptions) -> Plan:
    """Tokenize ``items`` (texts or ``(text, text_pair)`` tuples) into the rows the model runs."""
    if options.windows is not None:
        split = split_texts(tokenizer, items, options.windows)
        return Plan(split.windows, options, split)
    encodings = tokenizer.encode(items, options.truncation, options.truncation_direction)
    return Plan(encodings, options, truncated=tokenizer.truncated(encodings) if options.truncation else 0)
