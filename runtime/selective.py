"""A threshold with an "I don't know" answer: the most coverage at a target precision, with a guarantee.

Texts whose top (calibrated) score is below the threshold are not answered. The threshold is chosen on
labelled calibration data by **Learn then Test** (Angelopoulos, Bates, Candès, Jordan, Lei, 2021) with
**fixed-sequence testing**: candidate thresholds are tested in order from strict to lenient; each tests
"precision among the answered texts < P" with the exact binomial (Clopper–Pearson) bound at level δ, and
the search stops at the first threshold it cannot reject. The threshold picked has precision ≥ P with
probability ≥ 1 − δ over the draw of the calibration data; fixed-sequence testing needs no multiplicity
correction, which is what keeps the coverage up on a few hundred sentences (a union bound over a binary
search, as in Geifman & El-Yaniv's SGR, cost a third of the coverage on SST-2's 436-sentence halves).

The sequence is the calibration texts' own top scores, strictest first, starting where half of them are
answered: both read the scores only, never the labels. Written here because no kept library ships it
(``scipy`` has the binomial, but the runtime needs numpy only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ortpipe.runtime.errors import InputError

DEFAULT_DELTA = 0.1
START_COVERAGE = 0.5


@dataclass(frozen=True)
class ChosenThreshold:
    """The threshold found for a target precision, and what it did on the calibration data."""

    value: float
    target_precision: float
    delta: float
    coverage: float
    precision: float
    rows: int

    def as_record(self) -> dict:
        return {"value": round(self.value, 6), "target_precision": self.target_precision, "delta": self.delta,
                "method": "learn-then-test, fixed sequence, Clopper-Pearson", "calibration_coverage":
                round(self.coverage, 4), "calibration_precision": round(self.precision, 4), "rows": self.rows}


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p), summed in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    i = np.arange(min(k, n), dtype=np.float64)  # pmf(i + 1) / pmf(i) = (n − i) / (i + 1) · p / q
    logs = n * log_q + np.concatenate(([0.0], np.cumsum(np.log(n - i) - np.log(i + 1) + log_p - log_q)))
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))


def error_upper_bound(errors: int, n: int, delta: float) -> float:
    """The Clopper–Pearson upper bound on an error rate: the largest p with P(X ≤ errors) ≥ δ."""
    if errors >= n:
        return 1.0
    low, high = errors / n, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if binomial_cdf(errors, n, mid) > delta:
            low = mid
        else:
            high = mid
    return high


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, target_precision: float,
                     delta: float = DEFAULT_DELTA) -> ChosenThreshold | None:
    """The most lenient threshold whose precision is ≥ ``target_precision`` with probability ≥ 1 − ``delta``.

    Args:
        confidence: each calibration text's top (calibrated) score.
        correct: whether its top label is right.

    Returns:
        None when even the strictest tested threshold (half the texts answered) is not certified.
    """
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")
    confidence, wrong = np.asarray(confidence)[order], ~np.asarray(correct, dtype=bool)[order]
    errors_before = np.concatenate(([0], np.cumsum(wrong)))
    rows, chosen = len(confidence), None
    for answered in range(max(1, math.ceil(rows * START_COVERAGE)), rows + 1):
        if answered < rows and confidence[answered] == confidence[answered - 1]:
            continue  # a threshold answers every text with its score: ties go together
        errors = int(errors_before[answered])
        if binomial_cdf(errors, answered, 1.0 - target_precision) > delta:  # ⟺ the upper bound is above 1 − P
            break
        chosen = ChosenThreshold(float(confidence[answered - 1]), target_precision, delta, answered / rows,
                                 1.0 - errors / answered, rows)
    return chosen


def resolve_thresholds(threshold, labels: list[str], recorded: float | None, calibrated: bool,
                       function: str) -> np.ndarray | None:
    """A call's ``threshold`` as one value per label (None: no threshold).

    ``threshold``: a number in [0, 1]; a ``{label: number}`` mapping (labels it leaves out: 0.5 for
    sigmoid, whose scores are independent, else 0, always answered); or ``"auto"``, the bundle's
    recorded threshold (chosen on calibrated scores). Raises :class:`InputError` naming what is wrong.
    """
    if threshold is None:
        return None
    if function == "none":
        raise InputError("threshold needs scores in [0, 1], but function_to_apply 'none' returns raw logits")
    if isinstance(threshold, str):
        return _auto(threshold, labels, recorded, calibrated)
    if isinstance(threshold, dict):
        unknown = [name for name in threshold if name not in labels]
        if unknown:
            raise InputError(f"threshold names label(s) {unknown} the model does not have; its labels are {labels}")
        default = 0.5 if function == "sigmoid" else 0.0
        return np.asarray([_checked(threshold.get(name, default), f"threshold[{name!r}]") for name in labels],
                          dtype=np.float32)
    return np.full(len(labels), _checked(threshold, "threshold"), dtype=np.float32)


def _auto(threshold: str, labels: list[str], recorded: float | None, calibrated: bool) -> np.ndarray:
    if threshold != "auto":
        raise InputError(f"threshold must be a number in [0, 1], a {{label: number}} mapping or 'auto', "
                         f"got {threshold!r}")
    if recorded is None:
        raise InputError("threshold='auto' needs a threshold recorded in the bundle, and this variant has none; "
                         "record one with `ortpipe calibrate BUNDLE --data FILE --target-precision P`")
    if not calibrated:
        raise InputError("threshold='auto' was chosen on calibrated scores; it does not apply with "
                         "calibrated=False (give a number instead)")
    return np.full(len(labels), recorded, dtype=np.float32)


def _checked(value, name: str) -> float:
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not 0.0 <= value <= 1.0):
        raise InputError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)
