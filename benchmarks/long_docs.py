"""Long documents: truncation against windows, on a labelled long-document set built from SST-2.

    python -m ortpipe.benchmarks.long_docs --json long_docs.json --markdown long_docs.md

The set: ``--docs`` documents of 20–120 SST-2 test sentences each (``test.tsv``,
sentences the model never trained on), labelled with the majority label. The
minority sentences (20–45 % of a document) are split between its start and its
end, so that neither the head nor the tail of a document gives the answer away;
only reading it whole does. Seeded: the same set every run.

Modes, each one call of the classifier over the whole set (``batch_size``
texts or windows per call, the model calls under the ``memory="lean"`` cap of
512 padded tokens, as the runtime batches): ``head`` (today's truncation: the
first 510 tokens), ``tail`` (the last 510), ``head+tail`` (128 + 382 tokens,
Sun et al. 2019), and windows of 64/128/256/512 tokens with a quarter of each
as stride, under each aggregate. Reported per mode: accuracy, milliseconds per
document, and tokens of text read per second (the document's own tokens that
the model saw, overlap counted once). The short SST-2 test sentences are run
without and with windows: their scores must not move.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from ortpipe.runtime.batching import run_in_batches
from ortpipe.runtime.machine import describe_machine, isa_summary

WINDOWS = (64, 128, 256, 512)
AGGREGATES = ("mean", "max", "first")
HEAD, TAIL = 128, 382  # Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?"


def build_documents(sentences: list[str], labels: list[int], count: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``count`` documents of 20–120 sentences, labelled by their majority, the minority at both ends."""
    rng = random.Random(seed)
    by_label = {label: [s for s, y in zip(sentences, labels) if y == label] for label in sorted(set(labels))}
    documents, gold = [], []
    for _ in range(count):
        size = rng.randint(20, 120)
        label = rng.choice(sorted(by_label))
        other = rng.choice([y for y in by_label if y != label])
        minority = max(1, int(size * rng.uniform(0.20, 0.45)))
        major = rng.sample(by_label[label], size - minority)
        minor = rng.sample(by_label[other], minority)
        cut = rng.randint(minority // 3, minority - minority // 3)  # how many of the minority open the text
        documents.append(" ".join(minor[:cut] + major + minor[cut:]))
        gold.append(label)
    return documents, gold


class _HeadTail:
    """A document's first ``HEAD`` and last ``TAIL`` tokens with its special tokens (duck-typed Encoding)."""

    def __init__(self, text):
        content = np.concatenate((text.ids[text.first:text.first + HEAD], text.ids[text.last - TAIL:text.last])) \
            if text.content > HEAD + TAIL else text.ids[text.first:text.last]
        self.ids = np.concatenate((text.ids[:text.first], content, text.ids[text.last:]))
        self.type_ids = np.zeros(len(self.ids), dtype=np.int32)
        self.attention_mask = np.ones(len(self.ids), dtype=np.int32)
        self.read = len(content)


def _labels_of(clf, encodings, batch_size: int, max_tokens) -> list[str]:
    """The argmax label of each encoding, through the one batching loop."""
    def run(batch):
        return [clf.labels[int(row.argmax())] for row in clf.infer(clf.tokenizer.collate(batch))]

    return run_in_batches(encodings, [len(e.ids) for e in encodings], batch_size, run, max_tokens=max_tokens)


def measure(clf, documents: list[str], gold: list[int], batch_size: int = 32) -> list[dict]:
    """Every mode on ``documents``: accuracy, ms per document, text tokens read per second."""
    from ortpipe.runtime.windows import TokenizedText

    whole = [TokenizedText.of(e) for e in clf.tokenizer.encode_whole(documents)]
    content = [t.content for t in whole]
    limit = clf.manifest.max_length - clf.tokenizer.special_tokens
    cap = clf.memory.max_batch_tokens
    rows = []

    def record(mode: str, labels: list[str], seconds: float, read: int, **extra) -> None:
        correct = sum(clf.labels[y] == label for y, label in zip(gold, labels))
        rows.append({"mode": mode, **extra, "accuracy": correct / len(gold), "ms_per_doc": 1000 * seconds / len(gold),
                     "tokens_read": read, "tokens_per_s": read / seconds})
        print(f"  {mode:<22} {100 * correct / len(gold):6.2f} %  {1000 * seconds / len(gold):8.1f} ms/doc  "
              f"{read / seconds:9.0f} tok/s", file=sys.stderr, flush=True)

    for mode, direction in (("head", "right"), ("tail", "left")):
        started = time.perf_counter()
        encodings = clf.tokenizer.encode(documents, True, direction)
        labels = _labels_of(clf, encodings, batch_size, cap)
        record(mode, labels, time.perf_counter() - started, sum(min(n, limit) for n in content))
    started = time.perf_counter()
    both = [_HeadTail(TokenizedText.of(e)) for e in clf.tokenizer.encode_whole(documents)]
    labels = _labels_of(clf, both, batch_size, cap)
    record("head+tail", labels, time.perf_counter() - started, sum(h.read for h in both))
    for window in WINDOWS:
        for aggregate in AGGREGATES:
            started = time.perf_counter()
            results = clf(documents, window=window, stride=window // 4, aggregate=aggregate, batch_size=batch_size)
            record(f"window {window} {aggregate}", [r["label"] for r in results], time.perf_counter() - started,
                   sum(content), window=window, stride=window // 4, aggregate=aggregate)
    return rows


def measure_short(clf, sentences: list[str], gold: list[int], batch_size: int = 32) -> list[dict]:
    """The short sentences without and with windows: accuracy, time, and whether any score moved."""
    rows, reference = [], None
    for window in (None, *WINDOWS):
        started = time.perf_counter()
        results = clf(sentences, window=window, batch_size=batch_size)
        seconds = time.perf_counter() - started
        scores = [r["score"] for r in results]
        reference = scores if reference is None else reference
        correct = sum(clf.labels[y] == r["label"] for y, r in zip(gold, results))
        rows.append({"window": window, "accuracy": correct / len(gold), "ms_per_text": 1000 * seconds / len(gold),
                     "max_score_change": max(abs(a - b) for a, b in zip(scores, reference))})
        print(f"  short, window {window}: {100 * correct / len(gold):.2f} %, {1000 * seconds / len(gold):.2f} ms/text, "
              f"max score change {rows[-1]['max_score_change']:.2e}", file=sys.stderr, flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = ["| mode | accuracy | ms / document | text tokens read / s |", "|---|---|---|---|"]
    for row in report["long"]:
        lines.append(f"| {row['mode']} | {100 * row['accuracy']:.1f} % | {row['ms_per_doc']:.1f} | "
                     f"{row['tokens_per_s']:,.0f} |")
    lines += ["", "| short SST-2 test, window | accuracy | ms / text | max score change |", "|---|---|---|---|"]
    for row in report["short"]:
        lines.append(f"| {row['window'] or 'off'} | {100 * row['accuracy']:.2f} % | {row['ms_per_text']:.2f} | "
                     f"{row['max_score_change']:.1e} |")
    setup = report["setup"]
    lines += ["", f"{setup['documents']} documents of 20–120 SST-2 test sentences (mean {setup['mean_tokens']:.0f} "
                  f"tokens, {setup['over_limit']} over the model's limit); variant {setup['variant']}, "
                  f"{setup['provider']}, {setup['threads']} threads, batch {setup['batch_size']}, model calls of at "
                  f"most {setup['max_batch_tokens']} padded tokens. Machine: {setup['machine']}. "
                  f"Measured {setup['date']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from ortpipe.export.data import read_labelled_tsv, sst2_dir
    from ortpipe.runtime import TextClassifier
    from ortpipe.runtime.windows import TokenizedText

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle")
    parser.add_argument("--variant")
    parser.add_argument("--data", type=Path, help="labelled TSV of sentences (default: SST-2 test.tsv)")
    parser.add_argument("--docs", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    data = read_labelled_tsv(args.data or sst2_dir() / "test.tsv")
    clf = TextClassifier.load(args.bundle, variant=args.variant, threads=args.threads)
    documents, gold = build_documents(data.texts, data.labels, args.docs, args.seed)
    lengths = [TokenizedText.of(e).content for e in clf.tokenizer.encode_whole(documents)]
    clf(data.texts[:64], batch_size=args.batch_size)  # warm-up
    print(f"long documents ({len(documents)}, mean {np.mean(lengths):.0f} tokens):", file=sys.stderr)
    long_rows = measure(clf, documents, gold, args.batch_size)
    print(f"short sentences ({len(data.texts)}):", file=sys.stderr)
    short_rows = measure_short(clf, data.texts, data.labels, args.batch_size)
    machine = describe_machine()
    report = {"setup": {"documents": len(documents), "mean_tokens": float(np.mean(lengths)),
                        "over_limit": sum(n > clf.manifest.max_length - 2 for n in lengths), "variant": clf.variant,
                        "provider": clf.provider, "threads": args.threads, "batch_size": args.batch_size,
                        "max_batch_tokens": clf.memory.max_batch_tokens, "seed": args.seed,
                        "machine": isa_summary(machine), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
              "long": long_rows, "short": short_rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    text = markdown(report)
    if args.markdown:
        args.markdown.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
