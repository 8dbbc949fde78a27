"""Stage 3: softmax, sigmoid, none, and the pipeline's default choice."""

from __future__ import annotations

import numpy as np
import pytest

from ortpipe.runtime import InputError
from ortpipe.runtime.postprocess import apply_function, resolve_function, sigmoid, softmax


def test_softmax_is_stable_for_huge_logits():
    probs = softmax(np.array([[1000.0, 0.0, -1000.0], [3.0, 3.0, 3.0]], dtype=np.float32))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3, rtol=1e-6)


def test_softmax_of_the_seed_logits():
    probs = softmax(np.array([[-1.5607, 1.6123], [4.1692, -3.3464]]))
    np.testing.assert_allclose(probs, [[0.0402, 0.9598], [0.9995, 0.0005]], atol=1e-4)


def test_sigmoid_neither_overflows_nor_warns():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        values = sigmoid(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32))
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0], atol=1e-7)


@pytest.mark.parametrize("given,problem,labels,expected", [
    (None, "single_label_classification", 2, "softmax"),
    ("default", "multi_label_classification", 4, "sigmoid"),
    (None, "single_label_classification", 1, "sigmoid"),
    (None, "regression", 1, "none"),
    ("SIGMOID", "single_label_classification", 2, "sigmoid"),
    ("none", "single_label_classification", 2, "none"),
])
def test_resolve_function_follows_the_pipeline(given, problem, labels, expected):
    assert resolve_function(given, problem, labels) == expected


def test_unknown_function_is_an_input_error():
    with pytest.raises(InputError):
        resolve_function("relu", "single_label_classification", 2)
    with pytest.raises(InputError):
        apply_function(np.zeros((1, 2)), "relu")
