"""Scores you can act on, measured: calibration and the "auto" threshold held out, explanations against SHAP.

    python -m ortpipe.benchmarks.scores --data ../shared/data/sst2/test.tsv --plot docs/reliability.png

- **Calibration, cross-fitted**: the sentences are split in two halves (file order); a temperature (and the
  threshold for precision ``--target-precision``) is fitted on one half and measured on the other, then the
  reverse. ECE (15 bins) and log-loss raw and calibrated, the threshold's coverage and precision, per half;
  and pooled: every sentence scored by the temperature fitted on the other half (the reliability diagram).
- **Explanations**: on ``--sentences`` sentences of at least 8 words, ERASER's comprehensiveness (how much
  the predicted label's probability drops when the top 20 % of words by weight are left out, against a
  random 20 %, averaged over 5 draws) for ortpipe's leave-one-word-out weights and for SHAP's Partition
  explainer (``shap.maskers.Text`` on the same whitespace words, masked with its default "..."), with each
  method's model rows per sentence.
- **Cost**: one ~20-word sentence explained against a plain call, median of 30 calls each; the explained
  call at the variant's default batch size (1 for dynamic int8) and with its word rows batched by 32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ortpipe.benchmarks.report import publish, stamped
from ortpipe.export.data import read_labelled_tsv
from ortpipe.export.validate import logits_in_batches
from ortpipe.runtime.calibration import (expected_calibration_error, fit_temperature, log_loss, reliability)
from ortpipe.runtime.classifier import TextClassifier
from ortpipe.runtime.postprocess import softmax
from ortpipe.runtime.selective import DEFAULT_DELTA, choose_threshold
from ortpipe.runtime.timing import median_ms

TOP_SHARE = 0.2
RANDOM_DRAWS = 5


def cross_fitted(logits: np.ndarray, labels: np.ndarray, target: float) -> dict:
    """Per half: fitted on the other half, measured on this one; plus the pooled held-out scores."""
    halves = [np.arange(len(labels)) < len(labels) // 2]
    halves.append(~halves[0])
    folds, pooled = [], np.zeros_like(logits)
    for fit, held in ((halves[0], halves[1]), (halves[1], halves[0])):
        temperature = float(fit_temperature(logits[fit], labels[fit], "softmax"))
        scores, raw = softmax(logits[held] / temperature), softmax(logits[held])
        pooled[held] = scores
        fitted = softmax(logits[fit] / temperature)
        chosen = choose_threshold(fitted.max(1), fitted.argmax(1) == labels[fit], target, DEFAULT_DELTA)
        fold = {"temperature": temperature, "rows": int(held.sum()),
                "ece_raw": expected_calibration_error(raw, labels[held]),
                "ece_calibrated": expected_calibration_error(scores, labels[held]),
                "log_loss_raw": log_loss(raw, labels[held]), "log_loss_calibrated": log_loss(scores, labels[held])}
        if chosen is not None:
            answered = scores.max(1) >= chosen.value
            fold.update(threshold=chosen.value, coverage=float(answered.mean()),
                        precision=float((scores.argmax(1) == labels[held])[answered].mean()))
        folds.append(fold)
    return {"folds": folds, "pooled": pooled,
            "pooled_held_out": {"rows": len(labels), "ece_raw": expected_calibration_error(softmax(logits), labels),
                                "ece_calibrated": expected_calibration_error(pooled, labels),
                                "log_loss_raw": log_loss(softmax(logits), labels),
                                "log_loss_calibrated": log_loss(pooled, labels),
                                "labels_unchanged": bool((pooled.argmax(1) == logits.argmax(1)).all())}}


def plot_reliability(raw: np.ndarray, calibrated: np.ndarray, labels: np.ndarray, path: Path, title: str) -> None:
    """Accuracy against mean top score per bin, raw and calibrated (held out), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    axis.plot([0.5, 1], [0.5, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for scores, name, marker in ((raw, "raw", "o"), (calibrated, "calibrated (held out)", "s")):
        points = [p for p in reliability(scores, labels) if p["rows"] >= 5]
        ece = expected_calibration_error(scores, labels)
        axis.plot([p["confidence"] for p in points], [p["accuracy"] for p in points], marker=marker,
                  label=f"{name}: ECE {ece:.3f}")
    axis.set(xlabel="mean top score in the bin", ylabel="accuracy in the bin", xlim=(0.5, 1.0), ylim=(0.4, 1.0),
             title=title)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


class CountingModel:
    """``texts → probabilities (rows, labels)`` through ortpipe, counting the model rows asked for."""

    def __init__(self, clf: TextClassifier):
        self.clf, self.rows = clf, 0

    def __call__(self, texts) -> np.ndarray:
        texts = [str(t) if str(t).strip() else "." for t in texts]
        self.rows += len(texts)
        answers = self.clf(texts, top_k=None, batch_size=32)
        return np.asarray([[next(a["score"] for a in answer if a["label"] == label) for label in self.clf.labels]
                           for answer in answers], dtype=np.float32)


def _without(words: list[str], dropped: set[int]) -> str:
    return " ".join(word for i, word in enumerate(words) if i not in dropped)


def comprehensiveness(model: CountingModel, sentence: str, weights: np.ndarray, label: int, rng) -> tuple:
    """(drop leaving out the top 20 % of words by weight, mean drop leaving out a random 20 %)."""
    words = sentence.split()
    k = max(1, round(TOP_SHARE * len(words)))
    full = model([sentence])[0, label]
    top = set(np.argsort(-weights, kind="stable")[:k].tolist())
    randoms = [set(rng.choice(len(words), size=k, replace=False).tolist()) for _ in range(RANDOM_DRAWS)]
    texts = [_without(words, top)] + [_without(words, r) for r in randoms]
    scores = model(texts)[:, label]
    return float(full - scores[0]), float(np.mean(full - scores[1:]))


def ortpipe_weights(clf: TextClassifier, sentence: str) -> tuple[np.ndarray, int, int]:
    """Per whitespace word, its weight for the predicted label; the label; the model rows used."""
    (answer,) = clf([sentence], explain=True, batch_size=32)
    weights = np.asarray([w["weight"] for w in answer["explanation"]], dtype=np.float64)
    return weights, clf.labels.index(answer["label"]), len(weights) + 1


def shap_weights(model: CountingModel, explainer, sentence: str, label: int) -> tuple[np.ndarray, int]:
    """SHAP's value per whitespace word for ``label``, and the model rows it asked for."""
    before = model.rows
    values = explainer([sentence], silent=True)
    tokens = [t for t in values.data[0]]
    weights = np.asarray(values.values[0][:, label], dtype=np.float64)
    per_word = np.asarray([w for t, w in zip(tokens, weights) if t.strip()])
    return per_word, model.rows - before


def explanations(clf: TextClassifier, sentences: list[str], seed: int = 0) -> dict:
    """Comprehensiveness (top 20 % against random 20 %) and model rows per sentence, ortpipe and SHAP."""
    import shap

    model = CountingModel(clf)
    explainer = shap.Explainer(model, shap.maskers.Text(r"\s+"),  # whitespace words, masked with its "..."
                               output_names=clf.labels)
    rng = np.random.default_rng(seed)
    found = {"ortpipe": [], "shap": []}
    for sentence in sentences:
        weights, label, rows = ortpipe_weights(clf, sentence)
        found["ortpipe"].append((*comprehensiveness(model, sentence, weights, label, rng), rows))
        shap_values, shap_rows = shap_weights(model, explainer, sentence, label)
        if len(shap_values) == len(sentence.split()):
            found["shap"].append((*comprehensiveness(model, sentence, shap_values, label, rng), shap_rows))
    out = {}
    for name, rows in found.items():
        top, random_, used = (np.asarray(column) for column in zip(*rows))
        out[name] = {"sentences": len(rows), "top_20_drop": float(top.mean()), "random_20_drop": float(random_.mean()),
                     "ratio": float(top.mean() / random_.mean()), "model_rows_per_sentence": float(used.mean())}
    return out


def explain_cost(clf: TextClassifier, sentence: str) -> dict:
    """A plain call against an explained one, at the default batch size and with the word rows batched by 32."""
    plain = median_ms(lambda: clf(sentence), 30, warmup=3)
    explained = median_ms(lambda: clf(sentence, explain=True), 30, warmup=3)
    batched = median_ms(lambda: clf(sentence, explain=True, batch_size=32), 30, warmup=3)
    return {"words": len(sentence.split()), "plain_ms": plain, "default_batch_size": clf.default_batch_size(),
            "explained_ms": explained, "ratio": explained / plain,
            "explained_batch32_ms": batched, "ratio_batch32": batched / plain}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="default: the default bundle")
    parser.add_argument("--variant", help="default: what load() picks here")
    parser.add_argument("--data", type=Path, required=True, help="labelled TSV, e.g. SST-2's test.tsv")
    parser.add_argument("--target-precision", type=float, default=0.95)
    parser.add_argument("--sentences", type=int, default=200, help="sentences of ≥ 8 words to explain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", type=Path, help="write the reliability diagram here (PNG)")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args(argv)
    clf = TextClassifier.load(args.bundle, variant=args.variant, threads=args.threads)
    data = read_labelled_tsv(args.data, label2id={name: i for i, name in enumerate(clf.labels)})
    labels = np.asarray(data.labels)
    logits = logits_in_batches(clf.model, clf.tokenizer, data.texts, batch_size=1)
    calibration = cross_fitted(logits, labels, args.target_precision)
    if args.plot:
        plot_reliability(softmax(logits), calibration["pooled"], labels, args.plot,
                         f"{args.data.name}, {clf.variant}: raw vs cross-fitted temperature")
    long_ones = [t for t in data.texts if len(t.split()) >= 8][:args.sentences]
    twenty = min(long_ones, key=lambda t: abs(len(t.split()) - 20))
    report = stamped(bundle=str(clf.bundle.path), variant=clf.variant, threads=args.threads,
                     data=f"{args.data.name} ({len(labels)})", calibration=calibration["folds"],
                     calibration_pooled=calibration["pooled_held_out"],
                     explanations=explanations(clf, long_ones), explain_cost=explain_cost(clf, twenty))
    return publish(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
