"""Thresholds with an "I don't know" answer (runtime/selective.py): the bound, the choice, the call's spelling."""

from __future__ import annotations

import numpy as np
import pytest

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.selective import binomial_cdf, choose_threshold, error_upper_bound, resolve_thresholds

LABELS = ["NEGATIVE", "POSITIVE"]


def test_the_binomial_bound_is_clopper_pearsons():
    stats = pytest.importorskip("scipy.stats")
    for errors, n in ((0, 10), (3, 218), (22, 610), (5, 50)):
        assert error_upper_bound(errors, n, 0.1) == pytest.approx(stats.beta.ppf(0.9, errors + 1, n - errors),
                                                                  abs=1e-9)
    assert binomial_cdf(3, 10, 0.3) == pytest.approx(stats.binom.cdf(3, 10, 0.3))


def _sample(rows: int, rng):
    """Scores whose top label is right with probability equal to the score (a calibrated model)."""
    confidence = rng.uniform(0.8, 1.0, rows)
    return confidence, rng.random(rows) < confidence


def test_the_chosen_threshold_keeps_its_precision_on_fresh_data_almost_always():
    rng = np.random.default_rng(0)
    met = 0
    for _ in range(40):
        chosen = choose_threshold(*_sample(2000, rng), target_precision=0.92, delta=0.1)
        fresh_confidence, fresh_correct = _sample(20000, rng)
        answered = fresh_confidence >= chosen.value
        met += fresh_correct[answered].mean() >= 0.92
    assert met >= 34  # at least 1 - delta of the draws, with room for the 40 draws' own spread


def test_no_threshold_when_the_data_cannot_certify_it():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 200)
    assert choose_threshold(confidence, rng.random(200) < 0.6, target_precision=0.95) is None


def test_a_calls_threshold_is_one_value_per_label():
    assert resolve_thresholds(None, LABELS, None, True, "softmax") is None
    assert resolve_thresholds(0.8, LABELS, None, True, "softmax").tolist() == pytest.approx([0.8, 0.8])
    assert resolve_thresholds({"POSITIVE": 0.9}, LABELS, None, True, "softmax").tolist() == pytest.approx([0, 0.9])
    assert resolve_thresholds({"POSITIVE": 0.9}, LABELS, None, True, "sigmoid").tolist() == pytest.approx([0.5, 0.9])
    assert resolve_thresholds("auto", LABELS, 0.93, True, "softmax").tolist() == pytest.approx([0.93, 0.93])


@pytest.mark.parametrize("threshold, recorded, calibrated, function, needle", [
    (1.5, None, True, "softmax", r"number in \[0, 1\]"),
    (float("nan"), None, True, "softmax", r"number in \[0, 1\]"),
    (True, None, True, "softmax", r"number in \[0, 1\]"),
    ({"NEUTRAL": 0.5}, None, True, "softmax", "NEUTRAL"),
    ("auto", None, True, "softmax", "has none"),
    ("auto", 0.9, False, "softmax", "calibrated=False"),
    ("high", None, True, "softmax", "'auto'"),
    (0.5, None, True, "none", "raw logits"),
])
def test_a_bad_threshold_is_named(threshold, recorded, calibrated, function, needle):
    with pytest.raises(InputError, match=needle):
        resolve_thresholds(threshold, LABELS, recorded, calibrated, function)
