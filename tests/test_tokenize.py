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


def _long_texts(seed: int) -> list[str]:
    """Long texts of several kinds: words, CJK, emoji, one giant word, runs of newlines."""
    rng = np.random.default_rng(seed)
    words = ["movie", "great", "un-believable", "naïve", "中文", "🎉", "don't", "x" * 150, "\n\n", "a,b.c"]
    texts = []
    for size in (1100, 5000, 20000):
        picked = rng.choice(len(words), size=size)
        texts.append(" ".join(words[i] for i in picked))
    texts.append("word " * 30000)  # 150k characters
    texts.append("中" * 9000)  # no whitespace to cut at
    return texts


@pytest.mark.parametrize("direction", ["right", "left"])
def test_long_texts_are_cut_before_encoding_with_the_same_result(tokenizer, bert_bundle, direction):
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(bert_bundle / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(max_length=128, strategy="longest_first", direction=direction)
    texts = _long_texts(0)
    ours = tokenizer.encode(texts, direction=direction)
    assert [e.ids for e in ours] == [e.ids for e in reference.encode_batch(texts)]
    medium = "great movie " * 80  # 160 tokens, under the character bound: the longer one decides the shares
    pairs = [(texts[0], texts[1]), ("short question?", texts[3]), (texts[4], "short"), (medium, texts[2]),
             (texts[3], medium)]
    ours = tokenizer.encode(pairs, direction=direction)
    assert [e.ids for e in ours] == [e.ids for e in reference.encode_batch(pairs)]
    assert [e.type_ids for e in ours] == [e.type_ids for e in reference.encode_batch(pairs)]


def test_a_huge_text_reaches_the_tokenizer_cut_to_a_few_rows_worth(tokenizer):
    seen = []
    truncating = tokenizer._truncating_tokenizer("right")

    class Recording:  # the real tokenizer, with the lengths of what it was given written down
        def encode(self, text):
            seen.append(len(text))
            return truncating.encode(text)

    tokenizer._truncating["right"] = Recording()
    try:
        encoded = tokenizer(["great movie " * 10_000])  # 120k characters
    finally:
        tokenizer._truncating["right"] = truncating
    assert encoded.input_ids.shape == (1, 128)
    assert seen and max(seen) <= 128 * 8


def test_texts_under_the_bound_are_not_touched(tokenizer):
    text = "great movie " * 80  # 960 characters, above 128 tokens but under 128 × 8 characters
    assert tokenizer.bounded(text) is text
    assert tokenizer.encode([text])[0].ids == tokenizer.encode([text, "x"])[0].ids
