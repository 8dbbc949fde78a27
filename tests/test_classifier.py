"""TextClassifier: a drop-in for transformers.pipeline, batch-invariant, thread-safe, strict on input."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from ortpipe.export.validate import PROBE_TEXTS
from ortpipe.runtime import InputError, TextClassifier

TEXTS = list(PROBE_TEXTS)
PAIRS = [{"text": "A man sleeps.", "text_pair": "A person rests."},
         {"text": "The cat sat on the mat.", "text_pair": "Nobody sat anywhere at all, ever."},
         {"text": "ok", "text_pair": "A much longer second segment than the first one is."}]


def _hf_pipeline(checkpoint):
    from transformers import pipeline

    return pipeline("text-classification", model=str(checkpoint), tokenizer=str(checkpoint), device="cpu")


def _assert_same(ours, theirs, path="result"):
    """Same structure and labels; scores within 1e-4."""
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same(a, b, f"{path}[{i}]")
    else:
        assert set(ours) == {"label", "score"}, path
        assert ours["label"] == theirs["label"], (path, ours, theirs)
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-4), path


CALLS = [
    ("str", lambda: TEXTS[0], {}),
    ("str top_k=1", lambda: TEXTS[0], {"top_k": 1}),
    ("str top_k=2", lambda: TEXTS[3], {"top_k": 2}),
    ("str top_k=None", lambda: TEXTS[3], {"top_k": None}),
    ("list", lambda: TEXTS, {}),
    ("list top_k=None", lambda: TEXTS, {"top_k": None}),
    ("list top_k=1", lambda: TEXTS[:4], {"top_k": 1}),
    ("pair", lambda: PAIRS[0], {}),
    ("pairs top_k=None", lambda: PAIRS, {"top_k": None}),
    ("sigmoid", lambda: TEXTS[:3], {"function_to_apply": "sigmoid"}),
    ("none", lambda: TEXTS[:3], {"function_to_apply": "none", "top_k": None}),
]


@pytest.mark.parametrize("name,inputs,kwargs", CALLS, ids=[c[0] for c in CALLS])
def test_same_as_transformers_pipeline_single_label(name, inputs, kwargs, checkpoints, bundles):
    ours = TextClassifier.load(bundles["bert"], variant="fp32")(inputs(), **kwargs)
    theirs = _hf_pipeline(checkpoints["bert"])(inputs(), **kwargs)
    _assert_same(ours, theirs)


@pytest.mark.parametrize("kwargs", [{}, {"top_k": None}, {"top_k": 2}], ids=str)
def test_same_as_transformers_pipeline_multi_label(kwargs, checkpoints, bundles):
    ours = TextClassifier.load(bundles["bert-multilabel"], variant="fp32")(TEXTS, **kwargs)
    theirs = _hf_pipeline(checkpoints["bert-multilabel"])(TEXTS, **kwargs)
    _assert_same(ours, theirs)
    if kwargs.get("top_k", 1) is None:  # sigmoid scores need not sum to one
        assert any(abs(sum(d["score"] for d in row) - 1) > 1e-3 for row in ours)


@pytest.mark.parametrize("variant", ["fp32", "optimized", "int8"])
def test_result_is_identical_alone_and_in_any_batch(variant, bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant=variant)
    alone = [clf(text, top_k=None) for text in TEXTS]
    shuffled = list(range(len(TEXTS)))
    random.Random(3).shuffle(shuffled)
    in_batch = clf(TEXTS, top_k=None)
    reordered = clf([TEXTS[i] for i in shuffled], top_k=None)
    unsorted = clf(TEXTS, top_k=None, sort_by_length=False)
    assert in_batch == alone
    assert [reordered[shuffled.index(i)] for i in range(len(TEXTS))] == alone
    assert unsorted == alone


def test_float_variants_are_identical_in_batches_of_any_size(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized")
    alone = [clf(text, top_k=None) for text in TEXTS]
    for batch_size in (2, 7, 32):
        assert clf(TEXTS, top_k=None, batch_size=batch_size) == alone


def test_dynamic_int8_batches_only_when_asked_and_stays_close(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="int8")
    assert not clf.batch_invariant and clf.default_batch_size() == 1
    alone = clf(TEXTS, top_k=None)
    batched = clf(TEXTS, top_k=None, batch_size=32)
    worst = max(abs(a["score"] - next(b["score"] for b in row_b if b["label"] == a["label"]))
                for row_a, row_b in zip(alone, batched) for a in row_a)
    assert worst < 0.02


def test_stages_compose_to_the_call(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="fp32")
    encoded = clf.tokenize(TEXTS[:5])
    assert encoded.input_ids.dtype == np.int64 and encoded.input_ids.shape == encoded.attention_mask.shape
    logits = clf.infer(encoded)
    assert logits.shape == (5, 3)
    probs = clf.postprocess(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert clf.predict(probs, top_k=2) == clf(TEXTS[:5], top_k=2)


def test_concurrent_calls_from_threads_give_serial_results(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1)
    expected = {i: clf(TEXTS[i:i + 5], top_k=None) for i in range(0, len(TEXTS), 5)}
    failures: list = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            i = rng.choice(list(expected))
            if clf(TEXTS[i:i + 5], top_k=None) != expected[i]:
                failures.append(i)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize("text", ["", "   ", "\x00\x07\x1b[31m control \x7f", "这门课太棒了", "🎉🔥👍",
                                  "mixed 中文 and emoji 😀 text"])
def test_unusual_but_valid_texts_get_a_result(text, bert_bundle):
    (result,) = TextClassifier.load(bert_bundle)(text)
    assert result["label"] in ("LABEL_A", "LABEL_B", "LABEL_C") and 0.0 <= result["score"] <= 1.0


def test_huge_text_is_truncated_to_the_model_limit(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="fp32")
    huge = "word " * 20_000  # 100,000 characters
    encoded = clf.tokenize(huge)
    assert encoded.input_ids.shape == (1, clf.manifest.max_length)
    assert encoded.input_ids[0, -1] == 102  # still ends with [SEP]
    assert clf(huge)[0]["label"] in clf.labels
    with pytest.raises(InputError, match="more than the model's limit of 128"):
        clf(huge, truncation=False)


def test_empty_list_gives_empty_result(bert_bundle):
    assert TextClassifier.load(bert_bundle)([]) == []


@pytest.mark.parametrize("bad,message", [
    (None, "got NoneType"),
    (42, "got int"),
    (["fine", None], r"input\[1\].*got NoneType"),
    (["fine", b"bytes"], r"input\[1\].*got bytes"),
    ({"txt": "typo"}, "needs the key 'text'"),
    ({"text": "a", "text_pair": 3}, "'text_pair' must be a str"),
    ("\ud800", r"input is not valid Unicode: lone surrogate U\+D800 at character 0"),
    (["fine", "bad \udcff byte"], r"input\[1\] is not valid Unicode: lone surrogate U\+DCFF at character 4"),
    ({"text": "a", "text_pair": "\ud800"}, r"input\['text_pair'\] is not valid Unicode"),
    ([{"text": "ok"}, {"text": "\udfff", "text_pair": "b"}], r"input\[1\]\['text'\] is not valid Unicode"),
])
def test_wrong_types_are_clear_input_errors(bad, message, bert_bundle):
    with pytest.raises(InputError, match=message):
        TextClassifier.load(bert_bundle)(bad)


@pytest.mark.parametrize("kwargs,message", [
    ({"top_k": 0}, "top_k must be"),
    ({"top_k": "2"}, "top_k must be"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"function_to_apply": "relu"}, "function_to_apply must be"),
])
def test_bad_options_are_clear_input_errors(kwargs, message, bert_bundle):
    with pytest.raises(InputError, match=message):
        TextClassifier.load(bert_bundle)("text", **kwargs)


def test_invalid_unicode_is_refused_by_every_stage_that_takes_text(bert_bundle):
    clf = TextClassifier.load(bert_bundle)
    with pytest.raises(InputError, match=r"input\[0\] is not valid Unicode"):
        clf.tokenize(["\ud800"])
    assert clf("\ufffd replaced, as errors='replace' leaves it")[0]["label"] in clf.labels


def test_tokenize_of_nothing_is_an_error(bert_bundle):
    with pytest.raises(InputError, match="no texts"):
        TextClassifier.load(bert_bundle).tokenize([])


def test_input_errors_are_value_errors(bert_bundle):
    with pytest.raises(ValueError):
        TextClassifier.load(bert_bundle)(None)
