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


def pick_labels(scores: np.ndarray, top_k: int | None, one_label: bool, thresholds: np.ndarray | None,
                multi_label: bool) -> list[list[tuple[int, bool]]]:
    """Per text, the labels to return as ``(label index, answered)``, best first.

    Without thresholds: the argmax (``one_label``) or the ``top_k`` best. With thresholds (one per
    label): multi-label keeps every label at or above its own (at most ``top_k``; none is an empty
    list); single-label keeps the top label (or the ``top_k`` best) at or above theirs, and a text whose
    top label is below its threshold gets that label back unanswered (``label`` None).
    """
    if one_label and thresholds is None:
        return [[(int(j), True)] for j in scores.argmax(axis=-1)]
    k = check_top_k(top_k, scores.shape[-1]) if not one_label else 1
    order = np.argsort(-scores, axis=-1, kind="stable")
    if thresholds is None:
        return [[(int(j), True) for j in row[:k]] for row in order]
    passed = scores >= thresholds
    if multi_label:
        k = scores.shape[-1] if one_label else k
        return [[(int(j), True) for j in row if ok[j]][:k] for row, ok in zip(order, passed)]
    picks = []
    for row, ok in zip(order, passed):
        kept = [(int(j), True) for j in row[:k] if ok[j]]
        picks.append(kept if kept and kept[0][0] == row[0] else [(int(row[0]), False)])
    return picks


def label_dicts(scores: np.ndarray, labels: Sequence[str], picks: list[list[tuple[int, bool]]],
                as_dict: bool) -> list:
    """``{'label', 'score'}`` per pick (``label`` None where unanswered); one dict per text when ``as_dict``."""
    out = []
    for row, chosen in zip(scores, picks):
        dicts = [{"label": labels[j] if answered else None, "score": float(row[j])} for j, answered in chosen]
        out.append(dicts[0] if as_dict else dicts)
    return out
