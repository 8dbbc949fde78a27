"""One classification call, in three parts that every entry point shares.

    options = CallOptions.parse(clf, top_k=…, threshold=…, window=…)   # checked once, one spelling
    plan = plan_rows(clf.tokenizer, items, options)   # rows: encodings | windows | a text without each word
    logits = executor(plan.rows)                      # the batching loop | the server's batcher | a Ray batch
    results = plan.finish(logits, clf.labels)         # by text: aggregate → calibrate → function → labels
                                                      #          → threshold → explanations → windows

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
from ortpipe.runtime.calibration import Calibration
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.explain import Explained, explanation, plan_omissions, whole_windows, word_drops
from ortpipe.runtime.postprocess import apply_function, resolve_function
from ortpipe.runtime.predict import check_top_k, label_dicts, pick_labels
from ortpipe.runtime.selective import resolve_thresholds
from ortpipe.runtime.windows import WindowedTexts, WindowOptions, attach_windows, split_texts

UNSET: Any = object()  # top_k left out: the pipeline's one ``{'label', 'score'}`` per text
ALL = "all"  # the spelling of "every label" where None cannot say it (files, Ray, the CLI)


@dataclass(frozen=True)
class ModelFacts:
    """What options are checked against: the model's task and labels, its window rule, its memory's token
    cap, and the loaded variant's calibration."""

    problem_type: str
    labels: tuple[str, ...]
    windowing: Callable[..., WindowOptions | None]  # ``TextClassifier.window_options``
    max_batch_tokens: int | None = None
    calibration: Calibration | None = None

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, clf) -> "ModelFacts":
        """The facts of a :class:`~ortpipe.runtime.TextClassifier`."""
        return cls(clf.manifest.problem_type, tuple(clf.labels), clf.window_options, clf.memory.max_batch_tokens,
                   clf.calibration)


@dataclass(frozen=True)
class Scoring:
    """How scores are made actionable, as files and Ray carry it: calibration, threshold, explanations."""

    calibrated: bool = True
    threshold: Any = None  # a number, a {label: number} mapping, or "auto"
    explain: bool = False

    def as_kwargs(self) -> dict:
        return {"calibrated": self.calibrated, "threshold": self.threshold, "explain": self.explain}

    def one_dict(self, top_k: Any, problem_type: str, num_labels: int) -> bool:
        """Whether each text's answer is one ``{'label', 'score'}`` (else a list; see :class:`CallOptions`)."""
        multi_label = problem_type == "multi_label_classification" and num_labels > 1
        return top_k is None and not (multi_label and self.threshold is not None)


@dataclass(frozen=True)
class CallOptions:
    """A call's checked options.

    ``top_k``: labels per text, best first (None: every label); ``one_label``: the pipeline's default
    shape (``top_k`` left out), one ``{'label', 'score'}`` per text instead of a list. ``calibration``:
    what divides the logits (None: raw scores); ``thresholds``: one per label (None: every text answered);
    ``explain``: plan a row per word left out and add each label's ``explanation``.
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
    calibration: Calibration | None = None
    thresholds: Any = None
    multi_label: bool = False
    explain: bool = False

    @property
    def one_dict(self) -> bool:
        """Whether each text's answer is one dict: the pipeline's default, unless thresholds pick many labels."""
        return self.one_label and not (self.multi_label and self.thresholds is not None)

    @classmethod
    def parse(cls, model, *, top_k: Any = UNSET, function_to_apply: str | None = None, batch_size: int | None = None,
              truncation: bool = True, truncation_direction: str = "right", sort_by_length: bool = True,
              max_batch_tokens: Any = UNSET, window: Any = None, stride: Any = None, aggregate: Any = None,
              return_windows: Any = False, windows: Any = UNSET, calibrated: Any = True, threshold: Any = None,
              explain: Any = False) -> "CallOptions":
        """Check a call's options against ``model`` (a :class:`ModelFacts`, or a classifier).

        ``top_k``: left out (one label per text), None or ``"all"`` (every label), or an int.
        ``max_batch_tokens``: left out for the memory setting's cap (512 with ``lean``), None for none.
        ``windows``: window settings an edge has checked already (the server's own rules), instead of
        ``window``, ``stride``, ``aggregate`` and ``return_windows``.
        ``calibrated``: divide the logits by the bundle's temperature when it has one (False: raw scores).
        ``threshold``: see :func:`~ortpipe.runtime.selective.resolve_thresholds`; ``explain``: a bool.

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
        for name, value in (("calibrated", calibrated), ("explain", explain)):
            if not isinstance(value, bool):
                raise InputError(f"{name} must be true or false, got {value!r}")
        function = resolve_function(function_to_apply, facts.problem_type, facts.num_labels)
        calibration = facts.calibration if calibrated and function != "none" else None
        recorded = facts.calibration.threshold if facts.calibration is not None else None
        thresholds = resolve_thresholds(threshold, list(facts.labels), recorded, calibrated, function)
        return cls(function, None if one_label else top_k, one_label, truncation, truncation_direction.lower(),
                   windows, batch_size, sort_by_length, max_batch_tokens, calibration, thresholds,
                   function == "sigmoid" and facts.num_labels > 1, explain)


@dataclass
class Plan:
    """A call's rows, each tagged with its text (windows: ``split`` says how many each text has).

    With ``explain``, the texts' own rows come first, then every text's rows without one word each.
    """

    rows: list
    options: CallOptions
    split: WindowedTexts | None = None
    truncated: int = 0  # texts cut to the model's limit (windows off, truncation on)
    explained: list[Explained] | None = None
    own_rows: int | None = None  # rows before the omissions (None: all)

    @property
    def lengths(self) -> list[int]:
        """Each row's tokens, for the planner's length sort and token budget."""
        return [len(row) for row in self.rows]

    def per_text_logits(self, logits: np.ndarray) -> np.ndarray:
        """Each text's logits: its own row, or its windows' rows aggregated (explanation rows left out)."""
        own = logits[:self.own_rows] if self.own_rows is not None else logits
        return own if self.split is None else self.split.aggregate(own, self.options.windows.aggregate)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Logits → calibrated (when asked) → the call's function."""
        if self.options.calibration is not None:
            logits = self.options.calibration.apply(logits)
        return apply_function(logits, self.options.function)

    def finish(self, logits: np.ndarray, labels: Sequence[str]) -> list:
        """Per text, in input order: aggregated, calibrated, the function applied, labelled, thresholded,
        explained, shaped."""
        options = self.options
        logits = np.asarray(logits, dtype=np.float32)
        own = logits[:self.own_rows] if self.own_rows is not None else logits
        scores = self.scores(self.per_text_logits(logits))
        picks = pick_labels(scores, options.top_k, options.one_label, options.thresholds, options.multi_label)
        results = label_dicts(scores, labels, picks, options.one_dict)
        if self.explained is not None:
            self._explain(results, picks, scores, own, logits)
        if self.split is None or not options.windows.return_windows:
            return results
        details = self.split.details(self.scores(own), labels)
        return [attach_windows(result, own) for result, own in zip(results, details)]

    def _explain(self, results: list, picks: list, scores: np.ndarray, own: np.ndarray, logits: np.ndarray) -> None:
        """Add each returned label's ``explanation`` (an unanswered text's: its top label's)."""
        how = self.options.windows.aggregate if self.options.windows is not None else "first"
        start = 0
        for text, (result, chosen, full) in enumerate(zip(results, picks, scores)):
            count = self.split.counts[text] if self.split is not None else 1
            without = word_drops(self.explained[text], own[start:start + count], logits, how, self.scores)
            start += count
            for entry, (label, _) in zip([result] if isinstance(result, dict) else result, chosen):
                entry["explanation"] = explanation(self.explained[text], full, without, label)


def plan_rows(tokenizer, items: list, options: CallOptions) -> Plan:
    """Tokenize ``items`` (texts or ``(text, text_pair)`` tuples) into the rows the model runs."""
    if options.windows is not None:
        split = split_texts(tokenizer, items, options.windows)
        return _explained(Plan(split.windows, options, split), items, split.per_text())
    encodings = tokenizer.encode(items, options.truncation, options.truncation_direction)
    plan = Plan(encodings, options, truncated=tokenizer.truncated(encodings) if options.truncation else 0)
    return _explained(plan, items, whole_windows(encodings) if options.explain else [])


def _explained(plan: Plan, items: list, windows_per_text: list) -> Plan:
    """``plan`` with one more row per (window, word) when the call explains."""
    if not plan.options.explain:
        return plan
    texts = [item[0] if isinstance(item, tuple) else item for item in items]
    omissions, explained = plan_omissions(texts, windows_per_text, len(plan.rows))
    return Plan(list(plan.rows) + omissions, plan.options, plan.split, plan.truncated, explained, len(plan.rows))
