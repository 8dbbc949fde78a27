"""``ZeroShotClassifier``: a drop-in for transformers' ``pipeline("zero-shot-classification")`` on a bundle.

    from ortpipe.runtime import ZeroShotClassifier

    zs = ZeroShotClassifier.load("bundles/nli")
    zs("I love this movie", candidate_labels=["cinema", "politics"])          # one dict
    zs(["a", "b"], ["x", "y", "z"], hypothesis_template="It is about {}.", multi_label=True)   # a list

The scoring rule and the rows are :mod:`.zero_shot`'s; the rows run through the wrapped
:class:`~ortpipe.runtime.TextClassifier`'s batching loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ortpipe.runtime.classifier import TextClassifier
from ortpipe.runtime.errors import BundleError
from ortpipe.runtime.zero_shot import (DEFAULT_TEMPLATE, ZeroShotCall, ZeroShotOptions, find_entailment,
                                       no_entailment, pair_options, plan_zero_shot, zero_shot_texts)


def entailment_of(clf: TextClassifier) -> int | None:
    """The entailment label's index of a loaded classifier: the manifest's record, else found from its labels."""
    recorded = clf.manifest.entailment_id
    return recorded if recorded is not None else find_entailment(clf.labels)


class ZeroShotClassifier:
    """Zero-shot classification with an NLI bundle; ``classifier``: the :class:`TextClassifier` that runs it."""

    def __init__(self, classifier: TextClassifier):
        entailment = entailment_of(classifier)
        if entailment is None:
            raise BundleError(f"bundle {classifier.bundle.path}: {no_entailment(classifier.labels)}")
        self.classifier, self.entailment = classifier, entailment

    @classmethod
    def load(cls, path: str | Path | None = None, **load_options: Any) -> "ZeroShotClassifier":
        """Open an NLI bundle: ``variant``, ``provider``, ``threads`` … as :meth:`TextClassifier.load`."""
        return cls(TextClassifier.load(path, **load_options))

    def __repr__(self) -> str:
        clf = self.classifier
        return (f"ZeroShotClassifier(bundle={str(clf.bundle.path)!r}, variant={clf.variant!r}, "
                f"provider={clf.provider!r}, entailment={clf.labels[self.entailment]!r})")

    def __call__(self, sequences: str | list[str], candidate_labels: str | list[str],
                 hypothesis_template: str = DEFAULT_TEMPLATE, multi_label: bool = False,
                 batch_size: int | None = None, truncation: bool = True, sort_by_length: bool = True,
                 window: int | str | None = None, stride: int | None = None,
                 aggregate: str | None = None) -> dict | list[dict]:
        """Score each candidate label for each text; arguments and output as transformers' pipeline.

        Args:
            sequences: a str, or a list of str (text pairs are an error: the label makes the pair).
            candidate_labels: a list of distinct labels, or one comma-separated str.
            hypothesis_template: the hypothesis paired with the text, ``{}`` where the label goes.
            multi_label: each label scored on its own (entailment against contradiction), instead of
                the labels' entailment scores summing to 1.
            batch_size: pair rows per ONNX Runtime call (default: the classifier's).
            truncation, sort_by_length, window, stride, aggregate: as :meth:`TextClassifier.__call__`;
                with ``window``, each (text, hypothesis) pair's window logits are aggregated first.

        Returns:
            ``{'sequence', 'labels', 'scores'}`` (labels best first) for a str; a list of them for a list.
        """
        texts, single = zero_shot_texts(sequences)
        options = ZeroShotOptions.parse(candidate_labels, hypothesis_template, multi_label)
        call = pair_options(self.classifier, batch_size=batch_size, truncation=truncation, window=window,
                            stride=stride, aggregate=aggregate, sort_by_length=sort_by_length)
        plan = plan_zero_shot(self.classifier.tokenizer, texts, options, call, self.entailment)
        results = plan.finish(self.classifier.run(plan))
        return results[0] if single else results

    def classify(self, texts: list, call: ZeroShotCall) -> list[dict]:
        """Per text ``{'labels', 'scores'}`` (the text is its row's): the executor files and Ray Data run."""
        texts, _ = zero_shot_texts(list(texts))
        plan = plan_zero_shot(self.classifier.tokenizer, texts, call.zero_shot, call.pairs, self.entailment)
        return [{"labels": result["labels"], "scores": result["scores"]}
                for result in plan.finish(self.classifier.run(plan))]
