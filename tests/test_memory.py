"""ONNX Runtime memory settings: every one computes the same logits; lean caps and shrinks as documented."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from ortpipe.runtime import InputError, TextClassifier
from ortpipe.runtime.memory import LEAN_BATCH_TOKENS, SETTINGS, SHRINK_FLOOR, ShrinkPolicy, resolve_memory

WORDS = "the film was a quiet and patient study of a family that never talks".split()


def _texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 100)))) for _ in range(count)]


def test_aliases_and_bad_values():
    assert resolve_memory(None) == resolve_memory("lean") == "shrink"
    assert resolve_memory("fast") == "arena"
    assert [resolve_memory(s) for s in SETTINGS] == list(SETTINGS)
    with pytest.raises(InputError, match="memory must be one of"):
        resolve_memory("tiny")


def test_only_a_batch_larger_than_usual_shrinks():
    policy = ShrinkPolicy(ort)
    ordinary = [policy.is_large(rows, 60) for rows in range(1, 65)] * 2  # up to 64 × 60² = 230k < floor
    assert not any(ordinary)
    assert policy.is_large(8, 512)  # 8 × 512² = 2.1M: over the floor and over 2 × the usual
    assert not policy.is_large(64, 128)  # exactly the floor is not over it
    assert 64 * 128 * 128 == SHRINK_FLOOR and policy.shrinks == 1
    for _ in range(60):  # once long batches are a tenth of the traffic they are the usual, and keep the arena
        policy.is_large(8, 512)
    assert not policy.is_large(8, 512)


def test_every_setting_gives_the_same_logits(bert_bundle):
    texts = _texts(40)
    reference = TextClassifier.load(bert_bundle, variant="optimized", memory="fast")
    expected = reference.infer(reference.tokenize(texts))
    for setting in ("lean", *SETTINGS):
        clf = TextClassifier.load(bert_bundle, variant="optimized", memory=setting)
        assert clf.memory.setting == resolve_memory(setting)
        np.testing.assert_allclose(clf.infer(clf.tokenize(texts)), expected, atol=1e-5)
        ours, theirs = clf(texts, batch_size=64, top_k=None), reference(texts, batch_size=64, top_k=None)
        assert [[d["label"] for d in r] for r in ours] == [[d["label"] for d in r] for r in theirs]
        np.testing.assert_allclose([[d["score"] for d in r] for r in ours],
                                   [[d["score"] for d in r] for r in theirs], atol=1e-5)


def test_lean_caps_each_model_call_and_fast_keeps_the_callers_batches(bert_bundle):
    texts = _texts(64, seed=1)
    for memory, cap in (("lean", LEAN_BATCH_TOKENS), ("fast", None)):
        clf = TextClassifier.load(bert_bundle, variant="optimized", memory=memory)
        shapes = []
        model = clf.model

        class Recording:  # the real model, with the shape of every call written down
            memory = model.memory

            def __call__(self, encoded):
                shapes.append(encoded.input_ids.shape)
                return model(encoded)

        clf.model = Recording()
        clf(texts, batch_size=64)
        assert sum(rows for rows, _ in shapes) == 64
        if cap:
            assert len(shapes) > 1 and all(rows * width <= cap for rows, width in shapes)
        else:
            assert len(shapes) == 1
        assert clf(texts, batch_size=64, max_batch_tokens=None) is not None
    with pytest.raises(InputError, match="max_batch_tokens must be a positive int"):
        clf(texts, max_batch_tokens=0)


def test_a_large_batch_gives_the_arena_back(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", memory="shrink")
    clf(_texts(16), batch_size=16)
    assert clf.memory.shrinks == 0
    long = [" ".join(WORDS * 12)] * 70  # 70 rows of 128 tokens: over the floor
    assert len(clf(long, batch_size=70)) == 70
    assert clf.memory.shrinks == 1


def test_lean_cuts_a_batch_of_mixed_lengths_where_padding_costs_more_than_a_call(bert_bundle):
    from ortpipe.runtime.batching import plan_batches

    texts = _texts(64, seed=1)
    clf = TextClassifier.load(bert_bundle, variant="optimized")  # lean, the default
    shapes, model = [], clf.model

    class Recording:
        memory = model.memory

        def __call__(self, encoded):
            shapes.append(encoded.input_ids.shape)
            return model(encoded)

    clf.model = Recording()
    clf(texts, batch_size=64, max_batch_tokens=None)  # no token cap: the cuts are the planner's alone
    lengths = [len(e) for e in clf.tokenizer.encode(texts)]
    assert [rows for rows, _ in shapes] == [len(b) for b in plan_batches(lengths, 64, call_cost=clf.call_cost_tokens)]
    assert len(shapes) > 1
