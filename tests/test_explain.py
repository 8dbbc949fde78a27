"""Explanations (runtime/explain.py) and thresholds in a call: leave-one-word-out rows of the one plan."""

from __future__ import annotations

import pytest

from ortpipe.runtime import InputError, TextClassifier
from ortpipe.runtime.explain import MAX_EXPLAINED_WORDS

TEXT = "a fine film , full of quiet charm"


@pytest.fixture(scope="module")
def clf(bert_bundle):
    return TextClassifier.load(bert_bundle, variant="optimized", threads=1)


def _scores(clf, text) -> dict:
    return {r["label"]: r["score"] for r in clf(text, top_k=None)}


def test_a_words_weight_is_the_drop_of_its_labels_score_without_it(clf):
    (result,) = clf([TEXT], explain=True)
    words = TEXT.split(" ")
    assert [w["word"] for w in result["explanation"]] == words
    assert all(TEXT[w["start"]:w["end"]] == w["word"] for w in result["explanation"])
    full = _scores(clf, TEXT)[result["label"]]
    for index, entry in enumerate(result["explanation"]):
        without = " ".join(words[:index] + words[index + 1:])
        assert entry["weight"] == pytest.approx(full - _scores(clf, without)[result["label"]], abs=2e-6)


def test_every_returned_label_is_explained_and_the_rows_batch_together(clf):
    results = clf([TEXT, "dull"], top_k=2, explain=True, batch_size=64)
    assert all(len(entry["explanation"]) == len(TEXT.split()) for entry in results[0])
    assert [w["word"] for w in results[1][0]["explanation"]] == ["dull"]
    alone = clf([TEXT], top_k=2, explain=True, batch_size=1)[0]
    assert [w["weight"] for w in alone[1]["explanation"]] == pytest.approx(
        [w["weight"] for w in results[0][1]["explanation"]], abs=2e-6)


def test_a_text_within_one_window_is_explained_as_without_windows(clf):
    windowed = clf(TEXT, window=64, explain=True)[0]["explanation"]
    plain = clf(TEXT, explain=True)[0]["explanation"]
    assert [w["weight"] for w in windowed] == pytest.approx([w["weight"] for w in plain], abs=2e-6)


def test_a_long_text_is_explained_per_window(clf):
    """With ``aggregate='first'`` only the first window speaks: words past it weigh nothing, and those in it weigh
    what they weigh in the first window's text alone (a word the window cuts: its part inside)."""
    text = " ".join(f"word{i % 7} fine" for i in range(40))
    result = clf(text, window=24, aggregate="first", return_windows=True, explain=True)[0]
    first_end = result["windows"][0]["end"]
    inside = [w for w in result["explanation"] if w["start"] < first_end]  # the last one is cut by the window's end
    outside = [w for w in result["explanation"] if w["start"] >= first_end]
    assert inside and outside and all(w["weight"] == 0 for w in outside)
    alone = clf(text[:first_end], explain=True)[0]["explanation"]
    assert [w["weight"] for w in inside] == pytest.approx([w["weight"] for w in alone], abs=2e-6)


def test_a_pairs_text_is_explained_and_its_pair_kept_whole(clf):
    result = clf({"text": "fine film", "text_pair": "dull plot"}, explain=True)
    assert [w["word"] for w in result["explanation"]] == ["fine", "film"]


def test_explain_past_its_limit_is_named(clf):
    text = " ".join(["fine"] * (MAX_EXPLAINED_WORDS + 1))
    with pytest.raises(InputError, match=f"at most {MAX_EXPLAINED_WORDS}"):
        clf(text, window=64, explain=True)
    with pytest.raises(InputError, match="explain must be true or false"):
        clf(TEXT, explain="yes")


def test_a_text_below_the_threshold_is_answered_with_no_label(clf):
    best = clf(TEXT)[0]
    assert clf(TEXT, threshold=best["score"])[0] == best  # at the threshold: answered
    below = clf(TEXT, threshold=min(1.0, best["score"] + 1e-3))[0]
    assert below == {"label": None, "score": best["score"]}
    listed = clf(TEXT, top_k=None, threshold=min(1.0, best["score"] + 1e-3))
    assert listed == [{"label": None, "score": best["score"]}]
    others = {label: 1.0 for label in clf.labels if label != best["label"]}
    assert clf(TEXT, threshold=others)[0] == best  # the top label has no threshold of its own: 0


def test_multi_label_thresholds_keep_every_label_at_or_above_them(bundles):
    clf = TextClassifier.load(bundles["bert-multilabel"], variant="optimized", threads=1)
    scores = {r["label"]: r["score"] for r in clf(TEXT, top_k=None)}
    cut = sorted(scores.values())[1]
    kept = clf([TEXT], threshold=cut)[0]
    assert [r["label"] for r in kept] == sorted((l for l, s in scores.items() if s >= cut), key=lambda l: -scores[l])
    assert clf([TEXT], threshold=1.0)[0] == []
    assert len(clf([TEXT], threshold=0.0, top_k=2)[0]) == 2
