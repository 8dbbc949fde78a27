"""Stage 1: the Rust tokenizer as the runtime sets it up."""

from __future__ import annotations

import numpy as np
import pytest

from ortpipe.runtime.tokenize import TextTokenizer

SEED_IDS = [101, 2023, 2607, 2003, 6429, 999, 102]


@pytest.fixture(scope="module")
def tokenizer(bert_bundle):
    return TextTokenizer(bert_bundle / "tokenizer.json", max_length=128, pad_token_id=0)


def test_seed_sentence_token_ids(tokenizer):
    encoded = tokenizer(["This course is amazing!"])
    assert encoded.input_ids.tolist() == [SEED_IDS]
    assert encoded.tokens == [["[CLS]", "this", "course", "is", "amazing", "!", "[SEP]"]]


def test_matches_the_hugging_face_tokenizer_with_padding_and_pairs(tokenizer, checkpoints):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(checkpoints["bert"])
    texts = ["short", "a somewhat longer sentence, with punctuation!", "中文 and 🎉"]
    pairs = ["first", "second one is longer", "x"]
    ours = tokenizer(list(zip(texts, pairs)))
    theirs = hf(texts, pairs, padding=True, return_tensors="np")
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(getattr(ours, name), theirs[name])


def test_dynamic_padding_pads_to_the_longest_in_batch(tokenizer):
    encoded = tokenizer(["a", "a b c d"])
    assert encoded.input_ids.shape == (2, 6)
    assert encoded.attention_mask.tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert encoded.input_ids[0, 3:].tolist() == [0, 0, 0]


def test_pairs_are_truncated_longest_first(tokenizer):
    encoded = tokenizer([("word " * 300, "short pair")])
    assert encoded.input_ids.shape[1] == 128
    assert 1 in encoded.token_type_ids[0]  # the pair survived truncation


def test_unreadable_tokenizer_file_is_a_bundle_error(tmp_path):
    from ortpipe.runtime import BundleError

    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(BundleError, match="cannot be read"):
        TextTokenizer(bad, max_length=8, pad_token_id=0)
