"""Stage 3: logits → scores (softmax, sigmoid or none), in numpy."""

from __future__ import annotations

import numpy as np

from ortpipe.runtime.errors import InputError

FUNCTIONS = ("default", "softmax", "sigmoid", "none")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    exp /= exp.sum(axis=-1, keepdims=True)
    return exp


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Sigmoid that neither overflows nor warns for large |x|."""
    return np.exp(-np.logaddexp(0.0, -logits)).astype(logits.dtype, copy=False)


def resolve_function(function_to_apply: str | None, problem_type: str, num_labels: int) -> str:
    """The function ``transformers.pipeline`` would apply for this model.

    ``default``/None: none for regression, sigmoid for multi-label or a single
    label, softmax otherwise.
    """
    name = "default" if function_to_apply is None else function_to_apply
    if not isinstance(name, str) or name.lower() not in FUNCTIONS:
        raise InputError(f"function_to_apply must be one of {FUNCTIONS}, got {function_to_apply!r}")
    name = name.lower()
    if name != "default":
        return name
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def apply_function(logits: np.ndarray, function: str) -> np.ndarray:
    """Apply a resolved function name (``softmax``, ``sigmoid`` or ``none``)."""
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    if function == "none":
        return logits
    raise InputError(f"unknown function {function!r}; expected softmax, sigmoid or none")
