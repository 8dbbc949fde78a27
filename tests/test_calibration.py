"""Temperature scaling (runtime/calibration.py): the fit, the figures, the manifest record."""

from __future__ import annotations

import numpy as np
import pytest

from ortpipe.runtime.calibration import (Calibration, expected_calibration_error, figures, fit_temperature,
                                         log_loss, reliability)
from ortpipe.runtime.errors import BundleError
from ortpipe.runtime.postprocess import softmax, sigmoid


def _drawn(temperature: float, rows: int = 4000, labels: int = 3, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): that temperature is the calibrated one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(rows, labels)).astype(np.float32)
    truth = softmax(logits / temperature)
    drawn = np.array([rng.choice(labels, p=p / p.sum()) for p in truth.astype(np.float64)])
    return logits, drawn


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    for temperature in (0.7, 1.8):
        logits, labels = _drawn(temperature)
        assert float(fit_temperature(logits, labels, "softmax")) == pytest.approx(temperature, rel=0.08)


def test_calibration_lowers_ece_and_log_loss_and_keeps_every_label():
    logits, labels = _drawn(2.0, seed=1)
    temperature = fit_temperature(logits, labels, "softmax")
    raw, scaled = softmax(logits), softmax(logits / temperature)
    assert expected_calibration_error(scaled, labels) < expected_calibration_error(raw, labels) / 2
    assert log_loss(scaled, labels) < log_loss(raw, labels)
    assert (scaled.argmax(1) == raw.argmax(1)).all()
    got = figures(logits, labels, "softmax", temperature)
    assert got["ece_after"] < got["ece_before"] and got["rows"] == len(labels)


def test_multi_label_gets_one_temperature_per_label():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, size=(3000, 2)).astype(np.float32)
    truth = sigmoid(logits / np.array([0.5, 3.0], dtype=np.float32))
    labels = (rng.random(truth.shape) < truth).astype(np.float32)
    fitted = fit_temperature(logits, labels, "sigmoid")
    assert fitted.shape == (2,) and fitted[0] == pytest.approx(0.5, rel=0.15) and fitted[1] == pytest.approx(3.0, rel=0.15)


def test_ece_by_hand():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    labels = np.array([0, 1, 1])
    # bins: 0.9 (right), 0.8 (wrong), 0.7 (right): |1-0.9|/3 + |0-0.8|/3 + |1-0.7|/3
    assert expected_calibration_error(scores, labels) == pytest.approx((0.1 + 0.8 + 0.3) / 3)
    assert sum(point["rows"] for point in reliability(scores, labels)) == 3


@pytest.mark.parametrize("record, needle", [
    ({"method": "platt"}, "method"),
    ({"method": "temperature", "temperature": -1}, "positive number"),
    ({"method": "temperature", "temperature": [1.0, 2.0]}, "one per label"),
    ({"method": "temperature", "temperature": "hot"}, "positive number"),
    ({"method": "temperature", "temperature": 1.5, "threshold": {"value": 1.5}}, r"in \[0, 1\]"),
])
def test_a_malformed_record_is_a_bundle_error(record, needle):
    with pytest.raises(BundleError, match=needle):
        Calibration.from_record(record, 3, "bundle")


def test_a_record_divides_the_logits():
    calibration = Calibration.from_record({"method": "temperature", "temperature": 2.0,
                                           "threshold": {"value": 0.9}}, 2, "bundle")
    assert calibration.threshold == 0.9
    assert calibration.apply(np.array([[2.0, 4.0]])).tolist() == [[1.0, 2.0]]
    assert Calibration.from_record({}, 2, "bundle") is None
