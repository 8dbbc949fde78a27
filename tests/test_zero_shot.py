"""Zero-shot classification: parity with transformers' pipeline on tiny NLI models of four families."""

from __future__ import annotations

import pytest

from ortpipe.runtime import TextClassifier, ZeroShotClassifier
from ortpipe.runtime.errors import BundleError, InputError
from ortpipe.runtime.zero_shot import ZeroShotOptions, find_entailment, zero_shot_texts

TEXTS = ["I love this movie, the actors are wonderful.", "The election results were announced today.", "x",
         "Stocks fell sharply after the central bank raised interest rates again this morning."]
LABELS = ["cinema", "politics", "economy and finance", "sports"]


def _reference(checkpoint, arch):
    from transformers import AutoTokenizer, pipeline

    # the tiny models share BERT's tokenizer; the families without token types must not be fed them
    names = {"model_input_names": ["input_ids", "attention_mask"]} if arch in ("distilbert", "roberta",
                                                                           "deberta-v2") else {}
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), **names)
    return pipeline("zero-shot-classification", model=str(checkpoint), tokenizer=tokenizer, device="cpu")


def _close(ours, theirs, tol=1e-4):
    for a, b in zip(ours if isinstance(ours, list) else [ours], theirs if isinstance(theirs, list) else [theirs]):
        assert a["sequence"] == b["sequence"] and a["labels"] == b["labels"], (a, b)
        assert max(abs(x - y) for x, y in zip(a["scores"], b["scores"])) <= tol, (a, b)


@pytest.mark.parametrize("variant", ["fp32", "optimized"])
@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta", "deberta-v2"])
def test_zero_shot_matches_the_transformers_pipeline(nli_models, arch, variant):
    checkpoint, bundle = nli_models[arch]
    theirs, zs = _reference(checkpoint, arch), ZeroShotClassifier.load(bundle, variant=variant)
    _close(zs(TEXTS, LABELS), theirs(TEXTS, LABELS))
    _close(zs(TEXTS, LABELS, multi_label=True), theirs(TEXTS, LABELS, multi_label=True))
    template = "The topic of this text is {}!"
    _close(zs(TEXTS[0], LABELS, hypothesis_template=template), theirs(TEXTS[0], LABELS, hypothesis_template=template))
    _close(zs(TEXTS[1], "politics"), theirs(TEXTS[1], "politics"))  # one label: entailment against contradiction
    _close(zs(TEXTS, "cinema, politics,sports"), theirs(TEXTS, "cinema, politics,sports"))


def test_the_manifest_records_the_entailment_label_wherever_it_is(nli_models):
    for arch, index in (("bert", 2), ("distilbert", 0), ("roberta", 1), ("deberta-v2", 0)):
        manifest = TextClassifier.load(nli_models[arch][1], variant="fp32").manifest
        assert manifest.entailment_id == index and manifest.task == "zero-shot-classification", arch
    assert find_entailment(["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]) == 2 and find_entailment(["a", "b"]) is None


def test_a_model_without_an_entailment_label_is_refused_clearly(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="fp32")
    assert clf.manifest.entailment_id is None and clf.manifest.task == "text-classification"
    with pytest.raises(BundleError, match=r"no entailment label \(its labels: \['LABEL_A'"):
        ZeroShotClassifier(clf)


def test_pairs_batch_together_and_give_each_text_its_own_scores(nli_models):
    zs = ZeroShotClassifier.load(nli_models["bert"][1], variant="fp32")
    together = zs(TEXTS, LABELS, batch_size=7)
    alone = [zs(text, LABELS, batch_size=1) for text in reversed(TEXTS)][::-1]
    assert together == alone  # fp32: bit-identical whatever the batch


def test_long_texts_go_through_windows(nli_models):
    zs = ZeroShotClassifier.load(nli_models["bert"][1], variant="fp32")
    long_text = "The match went to extra time and the home side scored twice. " * 40
    with pytest.raises(InputError, match="window"):
        zs(long_text, LABELS, truncation=False)
    whole = zs(long_text, LABELS, window=64)
    assert sorted(whole["labels"]) == sorted(LABELS) and abs(sum(whole["scores"]) - 1) < 1e-6
    assert zs(TEXTS[0], LABELS, window=64) == zs(TEXTS[0], LABELS)  # a text in one window: the same answer


@pytest.mark.parametrize("labels, template, message", [
    ([], None, "non-empty list"),
    ("", None, "non-empty list"),
    (["a", "b", "a"], None, r"distinct; repeated: \['a'\]"),
    (["a", 3], None, r"candidate_labels\[1\]"),
    (["a"], "No placeholder.", "has no {}"),
    (["a"], "{0} {1}", "cannot be filled"),
    (["a"], 7, "must be a str"),
])
def test_bad_options_are_named(labels, template, message):
    with pytest.raises(InputError, match=message):
        ZeroShotOptions.parse(labels, template)


def test_bad_sequences_and_overlong_labels_are_named(nli_models):
    zs = ZeroShotClassifier.load(nli_models["bert"][1], variant="fp32")
    for given, message in (({"text": "a", "text_pair": "b"}, "text pair"), (["ok", ("a", "b")], r"sequences\[1\]"),
                           ([], "non-empty list"), (None, "must be a str or")):
        with pytest.raises(InputError, match=message):
            zero_shot_texts(given)
    with pytest.raises(InputError, match="candidate label 'word word.*the model reads at most 128"):
        zs("a text", ["word " * 200, "short"])
