"""Stage 4: argmax and top-k."""

from __future__ import annotations

import numpy as np
import pytest

from ortpipe.runtime import InputError
from ortpipe.runtime.predict import best_label, top_labels

LABELS = ["NEGATIVE", "NEUTRAL", "POSITIVE"]


def test_top_labels_sorted_best_first():
    scores = np.array([[0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    assert [d["label"] for d in top_labels(scores, LABELS, None)[0]] == ["POSITIVE", "NEUTRAL", "NEGATIVE"]
    assert top_labels(scores, LABELS, 1) == [[{"label": "POSITIVE", "score": 0.6}],
                                            [{"label": "NEGATIVE", "score": 0.5}]]
    assert len(top_labels(scores, LABELS, 10)[0]) == 3


def test_ties_keep_label_order():
    assert [d["label"] for d in top_labels(np.array([[0.5, 0.5, 0.0]]), LABELS, 2)[0]] == ["NEGATIVE", "NEUTRAL"]


def test_best_label():
    assert best_label(np.array([[0.2, 0.7, 0.1]]), LABELS) == [{"label": "NEUTRAL", "score": pytest.approx(0.7)}]


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_bad_top_k(top_k):
    with pytest.raises(InputError):
        top_labels(np.zeros((1, 3)), LABELS, top_k)
