"""Stage 4: scores → labels (argmax / top-k), as ``{'label', 'score'}`` dicts."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ortpipe.runtime.errors import InputError


def check_top_k(top_k: int | None, num_labels: int) -> int:
    """How many labels to keep per text; None means all of them."""
    if top_k is None:
        return num_labels
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InputError(f"top_k must be a positive int or None, got {top_k!r}")
    return min(top_k, num_labels)


def top_labels(scores: np.ndarray, labels: Sequence[str], top_k: int | None = 1) -> list[list[dict]]:
    """For each row, the ``top_k`` best labels, best first.

    Ties keep label order, as ``transformers.pipeline`` does (a stable sort).
    """
    k = check_top_k(top_k, len(labels))
    order = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return [[{"label": labels[j], "score": float(row[j])} for j in idx] for row, idx in zip(scores, order)]


def best_label(scores: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """For each row, the argmax label and its score (the pipeline's default output)."""
    best = scores.argmax(axis=-1)
    return [{"label": labels[j], "score": float(row[j])} for row, j in zip(scores, best)]
