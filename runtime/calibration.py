"""Calibrated scores: temperature scaling fitted on labelled data, and the figures that show it.

A bundle variant may carry a ``calibration`` record in the manifest (written by ``ortpipe calibrate``
or by ``ortpipe export --calibration-data``)::

    {"method": "temperature", "temperature": 1.61,          # one per label for multi-label models
     "threshold": {"value": 0.93, "target_precision": 0.95, ...},   # or null
     "fit": {...}, "held_out": {...}}                        # ECE and log-loss before and after

The logits are divided by the temperature before softmax/sigmoid: the argmax, so every label, is
unchanged; only how sure the scores say the model is. Fitting minimises the log-loss (negative
log-likelihood) over one temperature — a one-dimensional convex problem on log T, solved here by a
golden-section search so the runtime needs numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ortpipe.runtime.errors import BundleError
from ortpipe.runtime.postprocess import apply_function

ECE_BINS = 15
MIN_CALIBRATION_ROWS = 100  # fewer labelled rows than this fit a temperature too loosely to be worth recording
TEMPERATURE_RANGE = (0.05, 20.0)


@dataclass(frozen=True)
class Calibration:
    """A variant's recorded calibration: its temperature(s) and the threshold chosen for a target precision."""

    temperature: np.ndarray  # shape () or (num_labels,)
    threshold: float | None = None
    record: dict | None = None

    @classmethod
    def from_record(cls, record: Any, num_labels: int, where: str) -> "Calibration | None":
        """The checked calibration of a manifest's variant record (None when it has none)."""
        if not record:
            return None
        if not isinstance(record, dict) or record.get("method") != "temperature":
            raise BundleError(f"{where}: calibration must be a {{'method': 'temperature', ...}} object")
        raw = record.get("temperature")
        values = np.asarray(raw if isinstance(raw, list) else [raw], dtype=object)
        if values.size not in (1, num_labels) or not all(_positive(v) for v in values):
            raise BundleError(f"{where}: calibration temperature {raw!r} must be a positive number, or one per label")
        temperature = np.asarray(values, dtype=np.float32)
        threshold = (record.get("threshold") or {}).get("value")
        if threshold is not None and not (_number(threshold) and 0.0 <= threshold <= 1.0):
            raise BundleError(f"{where}: calibration threshold {threshold!r} must be a number in [0, 1]")
        return cls(temperature if isinstance(raw, list) else temperature.reshape(()), threshold, record)

    def summary(self) -> dict:
        """What ``doctor`` and ``/info`` show: the temperature, the held-out figures, the threshold."""
        record = self.record or {}
        measured = record.get("held_out") or record.get("fit") or {}
        threshold = record.get("threshold") or {}
        return {"temperature": record.get("temperature"), "data": record.get("data"),
                "measured_on": "held-out rows" if record.get("held_out") else "the fitted rows",
                **{k: measured.get(k) for k in ("rows", "ece_before", "ece_after", "log_loss_before",
                                                "log_loss_after")},
                "threshold": threshold.get("value"), "target_precision": threshold.get("target_precision"),
                "threshold_coverage": threshold.get("held_out_coverage"),
                "threshold_precision": threshold.get("held_out_precision")}

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """The logits divided by the temperature(s)."""
        return np.asarray(logits, dtype=np.float32) / self.temperature


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


# -- measuring ---------------------------------------------------------------------------------------------


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of single-label scores: the row-weighted gap between accuracy and mean top score, per equal-width bin."""
    confidence, correct = scores.max(axis=1), scores.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(gap)


def log_loss(scores: np.ndarray, labels: np.ndarray, multi_label: bool = False) -> float:
    """Mean negative log-likelihood of the true labels (binary cross-entropy per label for multi-label)."""
    eps = 1e-7
    scores = np.clip(scores.astype(np.float64), eps, 1 - eps)
    if multi_label:
        return float(-(labels * np.log(scores) + (1 - labels) * np.log(1 - scores)).mean())
    return float(-np.log(scores[np.arange(len(labels)), labels]).mean())


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per bin of top score: rows, mean top score and accuracy (a reliability diagram's points)."""
    confidence, correct = scores.max(axis=1), scores.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "rows": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean())}
            for b in range(bins) if (which == b).any()]


def figures(logits: np.ndarray, labels: np.ndarray, function: str, temperature) -> dict:
    """ECE (single-label), log-loss and accuracy of ``logits`` on ``labels``, raw and at ``temperature``."""
    multi = function == "sigmoid"
    raw, scaled = apply_function(logits, function), apply_function(logits / temperature, function)
    out = {"rows": int(len(labels)), "log_loss_before": log_loss(raw, labels, multi),
           "log_loss_after": log_loss(scaled, labels, multi)}
    if not multi:
        out.update(ece_before=expected_calibration_error(raw, labels),
                   ece_after=expected_calibration_error(scaled, labels),
                   accuracy=float((raw.argmax(axis=1) == labels).mean()))
    return {key: round(value, 6) if isinstance(value, float) else value for key, value in out.items()}


# -- fitting -----------------------------------------------------------------------------------------------


def fit_temperature(logits: np.ndarray, labels: np.ndarray, function: str) -> np.ndarray:
    """The temperature that minimises the log-loss: one for softmax, one per label for sigmoid (multi-label).

    ``labels``: class ids (softmax), or a 0/1 matrix of shape ``(rows, num_labels)`` (sigmoid).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if function == "softmax":
        return np.float32(_golden(lambda t: log_loss(apply_function(logits / t, "softmax"), labels)))
    if function != "sigmoid":
        raise ValueError(f"calibration needs probabilities (softmax or sigmoid), not {function!r}")
    labels = np.asarray(labels, dtype=np.float64).reshape(logits.shape)
    return np.asarray([_golden(lambda t, j=j: log_loss(apply_function(logits[:, j:j + 1] / t, "sigmoid"),
                                                       labels[:, j:j + 1], True))
                       for j in range(logits.shape[1])], dtype=np.float32)


def _golden(loss, steps: int = 80) -> float:
    """The minimiser of a unimodal ``loss(t)`` over ``TEMPERATURE_RANGE``, searched on log t."""
    low, high = (math.log(v) for v in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(math.exp(a)), loss(math.exp(b))
    for _ in range(steps):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(math.exp(b))
    return round(math.exp((low + high) / 2), 4)
