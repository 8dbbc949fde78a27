"""One call (runtime/call.py): options parsed once in one spelling, a plan of rows, one finish step."""

from __future__ import annotations

import numpy as np
import pytest

from ortpipe.runtime import InputError, TextClassifier
from ortpipe.runtime.call import ALL, UNSET, CallOptions, ModelFacts, plan_rows

TEXTS = ["a fine film", "dull and long", " ".join(["I loved every minute of it"] * 30)]


@pytest.fixture(scope="module")
def clf(bert_bundle):
    return TextClassifier.load(bert_bundle, variant="optimized", threads=1)


def test_every_spelling_of_top_k_is_one_option(clf):
    assert CallOptions.parse(clf).one_label and CallOptions.parse(clf, top_k=UNSET).top_k is None
    for every in (None, ALL):
        options = CallOptions.parse(clf, top_k=every)
        assert not options.one_label and options.top_k is None
    assert CallOptions.parse(clf, top_k=2).top_k == 2
    for bad in (0, -1, "two", True):
        with pytest.raises(InputError, match="top_k must be a positive int"):
            CallOptions.parse(clf, top_k=bad)


def test_options_are_checked_against_the_models_facts_without_a_classifier(clf):
    facts = ModelFacts("multi_label_classification", ("a", "b", "c", "d"), clf.window_options)
    assert CallOptions.parse(facts).function == "sigmoid"
    assert CallOptions.parse(facts, window=32).windows.stride == 8
    with pytest.raises(InputError, match="truncation_direction"):
        CallOptions.parse(facts, truncation_direction="up")


def test_a_plan_finished_from_any_executors_logits_is_what_the_call_returns(clf):
    """The executor returns logits only: here a plain loop over single rows, not the batching loop."""
    for window in (None, 32):
        options = CallOptions.parse(clf, top_k=None, window=window, return_windows=window is not None)
        plan = plan_rows(clf.tokenizer, TEXTS, options)
        logits = np.concatenate([clf.model(clf.tokenizer.collate([row])) for row in plan.rows])
        finished = plan.finish(logits, clf.labels)
        expected = clf(TEXTS, top_k=None, window=window, return_windows=window is not None)
        assert len(plan.rows) >= len(TEXTS) and len(finished) == len(TEXTS)
        for got, want in zip(finished, expected):
            got_labels = got["labels"] if isinstance(got, dict) else got
            want_labels = want["labels"] if isinstance(want, dict) else want
            assert [r["label"] for r in got_labels] == [r["label"] for r in want_labels]
            assert [r["score"] for r in got_labels] == pytest.approx([r["score"] for r in want_labels], abs=1e-6)


def test_a_classifier_keeps_how_it_was_loaded_so_a_reload_loads_as_before(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1, spinning=False, memory="fast")
    options = clf.load_options
    assert (options.variant, options.threads, options.spinning, options.memory) == ("optimized", 1, False, "fast")
    again = TextClassifier.load(bert_bundle, **options.as_kwargs())
    assert again.load_options == options and again.variant == "optimized"
    assert options.but(threads=2).threads == 2 and options.threads == 1
