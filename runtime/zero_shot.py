"""Zero-shot classification with an NLI model: one row per (text, hypothesis), batched with everything else.

    zs = ZeroShotClassifier.load("bundles/nli")
    zs("The new phone's battery lasts two days", candidate_labels=["technology", "sports", "politics"])
    # {'sequence': '...', 'labels': ['technology', ...], 'scores': [0.9..., ...]}

As transformers' ``ZeroShotClassificationPipeline``: each candidate label becomes a hypothesis
(``hypothesis_template.format(label)``) paired with the text; the model's entailment logit decides.
Single-label, the entailment logits of a text's labels are softmaxed together; multi-label (or one
label), each label's entailment is softmaxed against its contradiction alone. The entailment label is
found as transformers finds it (the first label starting with ``entail``, any case); the contradiction
logit is index 0, or the last one when entailment is index 0.

Every (text, hypothesis) pair is a row of the one call pipeline (:mod:`.call`): many texts × many labels
batch together, length-sorted, within the token budget, on any executor. Long texts: with ``window``,
each pair goes through windows (the hypothesis whole in every window, as a ``text_pair`` does), the
pair's window logits are aggregated (``mean`` by default) and the scores are then made from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ortpipe.runtime.call import UNSET, CallOptions, Plan, plan_rows
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.inputs import unicode_problem

DEFAULT_TEMPLATE = "This example is {}."
ZERO_SHOT = "zero-shot-classification"


def find_entailment(labels: Sequence[str]) -> int | None:
    """The entailment label's index, as transformers finds it (a label starting with ``entail``), or None."""
    return next((i for i, label in enumerate(labels) if str(label).lower().startswith("entail")), None)


def no_entailment(labels: Sequence[str]) -> str:
    return (f"this model has no entailment label (its labels: {list(labels)}): zero-shot classification needs a "
            "natural-language-inference model, e.g. one fine-tuned on MNLI")


@dataclass(frozen=True)
class ZeroShotOptions:
    """A zero-shot call's checked candidate labels, their hypotheses, and the scoring rule."""

    labels: tuple[str, ...]
    hypotheses: tuple[str, ...]
    multi_label: bool = False

    @classmethod
    def parse(cls, candidate_labels: Any, hypothesis_template: Any = DEFAULT_TEMPLATE,
              multi_label: Any = False) -> "ZeroShotOptions":
        """Check the options (``candidate_labels`` may be one comma-separated string, as in transformers).

        Raises:
            InputError: no labels, a label that is not a non-empty str, duplicates, or a template
                without ``{}``.
        """
        if isinstance(candidate_labels, str):
            candidate_labels = [label.strip() for label in candidate_labels.split(",") if label.strip()]
        if not isinstance(candidate_labels, (list, tuple)) or not candidate_labels:
            raise InputError("candidate_labels must be a non-empty list of labels (or one comma-separated string); "
                             f"got {candidate_labels!r}"[:300])
        for index, label in enumerate(candidate_labels):
            if not isinstance(label, str) or not label.strip() or unicode_problem(label):
                raise InputError(f"candidate_labels[{index}] must be a non-empty, valid str; got {label!r}"[:300])
        repeated = sorted({label for label in candidate_labels if candidate_labels.count(label) > 1})
        if repeated:
            raise InputError(f"candidate_labels must be distinct; repeated: {repeated}"[:300])
        template = DEFAULT_TEMPLATE if hypothesis_template is None else hypothesis_template
        if not isinstance(multi_label, bool) and multi_label is not None:
            raise InputError(f"multi_label must be true or false, got {multi_label!r}")
        return cls(tuple(candidate_labels), tuple(_hypotheses(template, candidate_labels)), bool(multi_label))


def _hypotheses(template: Any, labels: Sequence[str]) -> list[str]:
    """``template.format(label)`` per label; an InputError when the template has no ``{}`` for it."""
    if not isinstance(template, str):
        raise InputError(f"hypothesis_template must be a str with {{}} where the label goes; got {template!r}")
    try:
        made = [template.format(label) for label in labels]
    except (IndexError, KeyError, ValueError) as exc:
        raise InputError(f"hypothesis_template {template!r} cannot be filled with a label: {exc}") from None
    if made[0] == template:
        raise InputError(f"hypothesis_template {template!r} has no {{}} where the label goes, e.g. "
                         f"{DEFAULT_TEMPLATE!r}")
    return made


def zero_shot_texts(sequences: Any) -> tuple[list[str], bool]:
    """(the texts, whether one str was given); text pairs and other types are an InputError."""
    if isinstance(sequences, (str, dict)):
        return [_text(sequences, None)], True
    if isinstance(sequences, (list, tuple)) and sequences:
        return [_text(item, i) for i, item in enumerate(sequences)], False
    raise InputError(f"sequences must be a str or a non-empty list of str; got {type(sequences).__name__}")


def _text(item: Any, index: int | None) -> str:
    where = "the sequence" if index is None else f"sequences[{index}]"
    if isinstance(item, (dict, tuple, list)):
        raise InputError(f"{where} is a text pair: zero-shot classifies single texts (each candidate label makes "
                         "the hypothesis it is paired with)")
    if not isinstance(item, str):
        raise InputError(f"{where} must be a str, got {type(item).__name__}")
    problem = unicode_problem(item)
    if problem:
        raise InputError(f"{where} is not valid Unicode: {problem}")
    return item


def zero_shot_scores(logits: np.ndarray, entailment: int, multi_label: bool) -> np.ndarray:
    """``(texts, labels, classes)`` NLI logits → ``(texts, labels)`` scores, by transformers' rule."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label or logits.shape[1] == 1:
        contradiction = -1 if entailment == 0 else 0
        pair = logits[..., [contradiction, entailment]]
        pair = np.exp(pair - pair.max(-1, keepdims=True))
        return pair[..., 1] / pair.sum(-1)
    entail = logits[..., entailment]
    entail = np.exp(entail - entail.max(-1, keepdims=True))
    return entail / entail.sum(-1, keepdims=True)


class ZeroShotPlan:
    """A zero-shot call's rows (every text × every hypothesis, as a :class:`~.call.Plan` of pairs) and its answer.

    It has what executors read from a :class:`~.call.Plan` (``rows``, ``lengths``, ``split``, ``truncated``,
    ``options``: the pair rows'), so the in-process loop, the server's batcher and Ray run it unchanged.
    """

    explained = None

    def __init__(self, pairs: Plan, texts: list[str], options: ZeroShotOptions, entailment: int):
        self.pairs, self.texts, self.zero_shot, self.entailment = pairs, texts, options, entailment
        self.rows, self.split, self.truncated, self.options = pairs.rows, pairs.split, pairs.truncated, pairs.options

    @property
    def lengths(self) -> list[int]:
        return self.pairs.lengths

    def finish(self, logits: np.ndarray, model_labels: Sequence[str] | None = None) -> list[dict]:
        """Per text, in input order: ``{'sequence', 'labels', 'scores'}``, best first (``model_labels``: unused)."""
        per_pair = self.pairs.per_text_logits(np.asarray(logits, dtype=np.float32))
        labels = self.zero_shot.labels
        shaped = per_pair.reshape(len(self.texts), len(labels), -1)
        scores = zero_shot_scores(shaped, self.entailment, self.zero_shot.multi_label)
        results = []
        for text, row in zip(self.texts, scores):
            order = list(reversed(row.argsort()))  # transformers' order, ties included
            results.append({"sequence": text, "labels": [labels[i] for i in order],
                            "scores": [float(row[i]) for i in order]})
        return results


@dataclass(frozen=True)
class ZeroShotCall:
    """A zero-shot call's checked options as files and Ray Data carry them: the pair rows' and the labels'."""

    pairs: CallOptions
    zero_shot: ZeroShotOptions


def plan_zero_shot(tokenizer, texts: list[str], options: ZeroShotOptions, call: CallOptions,
                   entailment: int) -> ZeroShotPlan:
    """The rows of ``texts`` × ``options.hypotheses``; ``call``: the pair rows' options (:func:`pair_options`)."""
    check_hypotheses(tokenizer, options)
    items = [(text, hypothesis) for text in texts for hypothesis in options.hypotheses]
    return ZeroShotPlan(plan_rows(tokenizer, items, call), texts, options, entailment)


def check_hypotheses(tokenizer, options: ZeroShotOptions) -> None:
    """Each hypothesis, with the special tokens of a pair, must leave the model room for the text."""
    for label, encoding in zip(options.labels, tokenizer.encode_whole([("", h) for h in options.hypotheses])):
        if len(encoding) >= tokenizer.max_length:
            shown = repr(label[:60]) + ("…" if len(label) > 60 else "")
            raise InputError(f"candidate label {shown} makes a hypothesis of {len(encoding)} tokens with the "
                             f"special tokens; the model reads at most {tokenizer.max_length}, text included: "
                             "shorten the label or the hypothesis_template")


def pair_options(model, batch_size: int | None = None, truncation: bool = True, window: Any = None,
                 stride: Any = None, aggregate: Any = None, windows: Any = UNSET, **more) -> CallOptions:
    """The options of a zero-shot call's pair rows: logits only (the zero-shot rule replaces the function).

    ``windows``: settings an edge has checked already (the server's), instead of ``window``, ``stride``
    and ``aggregate``.
    """
    extra = {"windows": windows} if windows is not UNSET else {"window": window, "stride": stride,
                                                              "aggregate": aggregate}
    return CallOptions.parse(model, top_k=None, function_to_apply="none", calibrated=False, batch_size=batch_size,
                             truncation=truncation, **extra, **more)
