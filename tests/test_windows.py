"""Long texts through windows: the checks, the cuts (against the tokenizer's own overflow), spans,
exactness for texts that fit, aggregation, order, pairs, the manifest's window and bounded memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ortpipe.runtime import BundleError, InputError, TextClassifier
from ortpipe.runtime.postprocess import softmax
from ortpipe.runtime.windows import MIN_WINDOW, split_texts
from bundle_edits import edit_manifest

SENTENCES = ["The acting was superb and the story moving.", "I hated the ending, it made no sense at all.",
             "A dull, long film with nothing to say.", "Wonderful music — naïve, charming, 日本語の字幕も良い."]
LONG = " ".join(SENTENCES[i % 4] + f" Scene {i}." for i in range(40))  # about 600 tokens: several windows
SHORT = ["good", "a bad movie", SENTENCES[3]]


@pytest.fixture(scope="module")
def clf(bert_bundle):
    return TextClassifier.load(bert_bundle, variant="fp32")


def _overflow(bundle, text, window, stride, pair=None):
    """Hugging Face tokenizers' own overflow windows of ``text`` (ids, and the first text's character span)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=window, stride=stride, strategy="only_first")
    encoding = tokenizer.encode(text, pair) if pair else tokenizer.encode(text)
    found = []
    for part in [encoding, *encoding.overflowing]:
        own = [offset for offset, seq in zip(part.offsets, part.sequence_ids) if seq == 0]
        found.append((list(part.ids), (own[0][0], own[-1][1]), list(part.type_ids)))
    return found


# -- the checks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, needle", [
    ({"window": 10_000}, "window must be an int from 16 to the model's limit of 128 tokens"),
    ({"window": MIN_WINDOW - 1}, "got 15"),
    ({"window": True}, "got True"),
    ({"window": "huge"}, "got 'huge'"),
    ({"window": 32, "stride": 30}, "stride must be an int from 0 to 29 for window=32"),
    ({"window": 32, "stride": -1}, "got -1"),
    ({"window": 32, "aggregate": "median"}, "aggregate must be one of ['mean', 'max', 'first'], got 'median'"),
    ({"window": 32, "truncation": False}, "truncation=False cannot be used"),
    ({"window": 32, "return_windows": "yes"}, "return_windows must be True or False"),
    ({"stride": 8}, "stride needs window=N"),
    ({"aggregate": "max", "return_windows": True}, "aggregate, return_windows need window=N"),
])
def test_every_bad_window_setting_is_an_input_error_naming_it(clf, kwargs, needle):
    with pytest.raises(InputError) as caught:
        clf(["a text"], **kwargs)
    assert needle in str(caught.value)


def test_a_text_pair_too_long_for_the_window_names_the_input(clf):
    pair = {"text": LONG, "text_pair": " ".join(["word"] * 40)}
    with pytest.raises(InputError, match=r"input\[1\]: its text_pair and special tokens take 43 of the window's 32"):
        clf(["fine", pair], window=32)


# -- the cuts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("window, stride", [(32, 8), (16, 0), (64, 40), (128, 32)])
def test_windows_are_the_tokenizers_own_overflow_with_their_spans(clf, bert_bundle, window, stride):
    options = clf.window_options(window, stride)
    (windows,) = [split_texts(clf.tokenizer, [LONG], options).windows]
    expected = _overflow(bert_bundle, LONG, window, stride)
    assert [list(w.ids) for w in windows] == [ids for ids, _, _ in expected]
    assert [w.span for w in windows] == [span for _, span, _ in expected]
    assert len(windows) > 1 and len(windows[-1]) < window  # the last window is short here
    assert windows[0].span[0] == 0 and windows[-1].span[1] == len(LONG)


def test_spans_count_characters_of_unicode_text(clf):
    text = "naïve café — 日本語の字幕 " * 30
    windows = split_texts(clf.tokenizer, [text], clf.window_options(16, 4)).windows
    for w in windows:
        start, end = w.span
        assert text[start:end].strip() == text[start:end]  # spans start and end on tokens, not spaces
        assert 0 <= start < end <= len(text)
    assert windows[-1].span[1] == len(text.rstrip())


def test_a_pair_goes_whole_into_every_window(clf, bert_bundle):
    question = "Is the film worth seeing?"
    windows = split_texts(clf.tokenizer, [(LONG, question)], clf.window_options(48, 12)).windows
    expected = _overflow(bert_bundle, LONG, 48, 12, pair=question)
    assert len(windows) > 1 and [list(w.ids) for w in windows] == [ids for ids, _, _ in expected]
    assert [list(w.type_ids) for w in windows] == [types for _, _, types in expected]
    assert [w.span for w in windows] == [span for _, span, _ in expected]


# -- the scores -----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["fp32", "optimized"])
def test_texts_that_fit_one_window_get_exactly_the_scores_they_get_without(bert_bundle, variant):
    clf = TextClassifier.load(bert_bundle, variant=variant)
    items = [*SHORT, {"text": "A man sleeps.", "text_pair": "A person rests."}]
    for window in (32, 128, "auto"):
        assert clf(items, top_k=None, window=window) == clf(items, top_k=None)
        assert clf(items, window=window, batch_size=2) == clf(items)


def test_dynamic_int8_windows_are_as_batch_dependent_as_today(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="int8")
    assert clf(SHORT, top_k=None, window=64) == clf(SHORT, top_k=None)  # batch 1 by default: exact
    assert clf(SHORT, top_k=None, window=64, batch_size=8) == clf(SHORT, top_k=None, batch_size=8)


@pytest.mark.parametrize("aggregate", ["mean", "max", "first"])
def test_a_long_text_is_the_aggregate_of_its_windows_classified_one_by_one(clf, aggregate):
    options = clf.window_options(32, 8)
    windows = split_texts(clf.tokenizer, [LONG], options).windows
    rows = np.stack([clf.infer(clf.tokenizer.collate([w]))[0] for w in windows])
    logits = {"mean": rows.mean(axis=0), "max": rows.max(axis=0), "first": rows[0]}[aggregate]
    (result,) = clf([LONG], top_k=None, window=32, stride=8, aggregate=aggregate, batch_size=5)
    by_label = {r["label"]: r["score"] for r in result}
    np.testing.assert_allclose([by_label[label] for label in clf.labels], softmax(logits[None])[0], atol=1e-6)
    assert clf([LONG], top_k=None) != [result]  # the truncated answer differs: the windows were read


def test_return_windows_gives_each_windows_span_label_and_score(clf):
    (result,) = clf([LONG], window=32, stride=8, return_windows=True)
    windows = split_texts(clf.tokenizer, [LONG], clf.window_options(32, 8)).windows
    assert set(result) == {"label", "score", "windows"} and len(result["windows"]) == len(windows)
    for shown, window in zip(result["windows"], windows):
        scores = softmax(clf.infer(clf.tokenizer.collate([window])))[0]
        assert (shown["start"], shown["end"]) == window.span
        assert shown["label"] == clf.labels[int(scores.argmax())]
        assert shown["score"] == pytest.approx(float(scores.max()), abs=1e-6)
    (ranked,) = clf([LONG], top_k=2, window=32, return_windows=True)
    assert set(ranked) == {"labels", "windows"} and len(ranked["labels"]) == 2


def test_order_is_restored_over_mixed_long_and_short_texts(clf):
    items = [LONG, "ok", LONG[:700], SENTENCES[1], LONG[300:], "fine"]
    together = clf(items, top_k=None, window=32, batch_size=3)
    assert together == [clf([item], top_k=None, window=32)[0] for item in items]
    assert clf(LONG, window=32) == [clf([LONG], window=32)[0]]  # a str still gets the pipeline's [dict]


def test_truncated_texts_are_counted_when_windows_are_off(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="fp32")
    clf([LONG, "short", LONG])
    assert clf.truncated_texts == 2
    clf([LONG], window=32)
    assert clf.truncated_texts == 2


# -- the bundle's recommended window ------------------------------------------------------------

def test_the_manifest_window_is_what_auto_uses_and_is_checked(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.update(window=48))
    clf = TextClassifier.load(bundle_copy, variant="fp32")
    assert clf.window_options("auto").window == 48 and clf.window_options("auto").stride == 12
    edit_manifest(bundle_copy, lambda m: m.update(window=4096))
    with pytest.raises(BundleError, match="window 4096 must be an int from 16 to max_length"):
        TextClassifier.load(bundle_copy, variant="fp32")


def test_without_a_recommended_window_auto_is_the_models_limit(clf):
    assert clf.manifest.window is None and clf.window_options("auto").window == 128


def test_export_records_the_window(checkpoints, tmp_path):
    from ortpipe.export.bundle import BuildOptions, ExportError, build_bundle

    options = BuildOptions(optimize=False, quantize=None, fp16=False, window=64)
    manifest = build_bundle(str(checkpoints["bert"]), tmp_path / "b", options, echo=lambda line: None)
    assert manifest.window == 64
    assert TextClassifier.load(tmp_path / "b").window_options("auto").window == 64
    with pytest.raises(ExportError, match="--window 999 must be from 16 to the model's limit of 128"):
        build_bundle(str(checkpoints["bert"]), tmp_path / "c", BuildOptions(window=999), echo=lambda line: None)


# -- memory -------------------------------------------------------------------------------------

# the peak from /proc (VmHWM, reset by exec), not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of
# the test process would report at least the test process's own size
PEAK_RSS = """
def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024
import sys
from ortpipe.runtime import TextClassifier
clf = TextClassifier.load(sys.argv[1], variant="fp32", threads=1)
clf("warm-up")
unit = "The acting was superb, the story moving; the ending, alas, made no sense at all. "
text = unit * (int(sys.argv[2]) // len(unit))
(result,) = clf([text], window=64, return_windows=True)
print(len(result["windows"]), peak_mb())
"""
# what a 2 MB text may add to the peak (measured: +55 MB): its compact arrays, a piece's encoding at a time,
# its results; not its windows' tensors, built one batch at a time (tokenized in one piece: +397 MB)
RSS_MARGIN_MB = 100


def test_peak_memory_of_a_2_mb_text_stays_within_a_margin_of_a_20_kb_one(bert_bundle):
    peaks = {}
    for size in (20_000, 2_000_000):
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(bert_bundle), str(size)], capture_output=True,
                              text=True, check=True)
        windows, peaks[size] = map(int, done.stdout.split()[-2:])
        assert windows > size // 300  # every window was classified

    assert peaks[2_000_000] - peaks[20_000] <= RSS_MARGIN_MB, peaks


@pytest.mark.parametrize("pair", [None, "Is it any good?"])
def test_a_text_tokenized_in_pieces_gets_the_whole_texts_tokens(clf, monkeypatch, pair):
    from ortpipe.runtime import windows as windows_module

    text = ("naïve café — 日本語の字幕   and\tsome  spaces, " + LONG) * 4
    options = clf.window_options(32, 8)
    item = (text, pair) if pair else text
    whole = split_texts(clf.tokenizer, [item], options).windows
    monkeypatch.setattr(windows_module, "SEGMENT_CHARS", 200)
    pieces = split_texts(clf.tokenizer, [item], options).windows
    assert len(whole) > 10
    assert [list(w.ids) for w in pieces] == [list(w.ids) for w in whole]
    assert [list(w.type_ids) for w in pieces] == [list(w.type_ids) for w in whole]
    assert [w.span for w in pieces] == [w.span for w in whole]
