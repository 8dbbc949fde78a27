"""The ``ortpipe`` command: ``classify`` and ``doctor`` here; ``export``, ``finetune``
and ``bench`` from their own halves, imported only when asked for (they need the extras).

    ortpipe classify "This course is amazing!" --explain
    echo "good" | ortpipe classify --top-k 2
    ortpipe doctor --json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Sequence

from ortpipe.runtime.errors import InputError, OrtpipeError

# Modules that add their own subcommands; each imports its heavy libraries only when run.
_COMMAND_MODULES = ("ortpipe.export.cli", "ortpipe.benchmarks.cli", "ortpipe.serve.cli")


def add_memory_argument(parser) -> None:
    """``--memory lean|fast|…`` (default ``$ORTPIPE_MEMORY`` or lean), for every command that loads a model."""
    from ortpipe.runtime.memory import ALIASES, DEFAULT_MEMORY, SETTINGS

    parser.add_argument("--memory", default=os.environ.get("ORTPIPE_MEMORY", DEFAULT_MEMORY),
                        choices=(*sorted(ALIASES), *SETTINGS),
                        help="ONNX Runtime memory: lean (default) caps a model call at 1024 padded tokens and "
                             "gives back what a larger-than-usual batch took; fast keeps ONNX Runtime's arena "
                             "at its largest batch and the caller's batches whole (env ORTPIPE_MEMORY)")


def _add_classify(subparsers) -> None:
    parser = subparsers.add_parser("classify", help="classify texts with a bundle (JSON lines out)",
                                   description="Classify texts given as arguments, in --file (one per "
                                               "line) or on stdin. Prints one JSON object per text.")
    parser.add_argument("texts", nargs="*", metavar="TEXT")
    parser.add_argument("--bundle", help="bundle folder (default: the default bundle)")
    parser.add_argument("--variant", help="fp32, optimized, int8 … (default: the manifest's choice)")
    parser.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.add_argument("--file", help="read texts from this file, one per line")
    parser.add_argument("--top-k", type=int, help="return the K best labels per text")
    parser.add_argument("--all-labels", action="store_true", help="return every label, best first")
    parser.add_argument("--batch-size", type=int,
                        help="texts per ONNX Runtime call (default 32; 1 for dynamic int8, whose "
                             "scores otherwise depend on batch neighbours)")
    parser.add_argument("--explain", action="store_true",
                        help="walk the four stages for each text: tokens, ids, logits, probabilities, prediction")
    add_memory_argument(parser)
    parser.set_defaults(run=_run_classify)


def _add_doctor(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="this machine, and how each variant of a bundle fares on it",
        description="Describe this machine (CPU, ISA features, ONNX Runtime, providers, CUDA device) and run "
                    "the bundle's probe texts on every variant here: agreement with the stored fp32 logits, "
                    "max |Δlogit|, single-sentence latency, and the variant load() would choose, and why.")
    parser.add_argument("--bundle", help="bundle folder (default: the default bundle)")
    parser.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_memory_argument(parser)
    parser.set_defaults(run=_run_doctor)


def _run_doctor(args) -> int:
    from ortpipe.runtime.doctor import diagnose, format_report

    report = diagnose(args.bundle, provider=args.provider, threads=args.threads, memory=args.memory)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _read_file(path: str) -> list[str]:
    """Non-empty lines of a UTF-8 file; a line that is not UTF-8 is an error naming it."""
    texts = []
    try:
        with open(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise InputError(f"--file {path}, line {line_no}: not valid UTF-8 (byte "
                                     f"0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)") from None
                if line.strip():
                    texts.append(line)
    except OSError as exc:
        raise InputError(f"cannot read --file {path}: {exc.strerror}") from exc
    return texts


def _read_texts(args) -> list[str]:
    if args.texts:
        return list(args.texts)
    if args.file:
        return _read_file(args.file)
    if sys.stdin is None or sys.stdin.isatty():
        raise InputError("no texts: give TEXT arguments, --file PATH, or pipe texts on stdin")
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]


def explain(clf, text: str, out=None) -> dict:
    """Print the four stages for one text, as the classic walk-through does; return the prediction."""
    out = out or sys.stdout
    encoded = clf.tokenize([text])
    logits = clf.infer(encoded)
    probs = clf.postprocess(logits)
    (prediction,) = clf.predict(probs, top_k=1)
    width = max(len(label) for label in clf.labels)
    ids = encoded.input_ids[0].tolist()

    def per_label(values) -> str:
        return "  ".join(f"{label:>{width}} {value: .4f}" for label, value in zip(clf.labels, values))

    print(f"text: {text!r}", file=out)
    print(f"  1 tokenize     tokens  {' '.join(encoded.tokens[0])}", file=out)
    print(f"                 ids     {ids}", file=out)
    print(f"  2 infer        logits  {per_label(logits[0])}   ({clf.variant}, {clf.provider})", file=out)
    print(f"  3 postprocess  probs   {per_label(probs[0])}", file=out)
    print(f"  4 predict      {prediction[0]['label']} {prediction[0]['score'] * 100:.2f} %", file=out)
    return prediction[0]


def _run_classify(args) -> int:
    from ortpipe.runtime.classifier import TextClassifier

    texts = _read_texts(args)
    clf = TextClassifier.load(args.bundle, variant=args.variant, provider=args.provider, threads=args.threads,
                              memory=args.memory)
    if args.explain:
        for text in texts:
            explain(clf, text)
        return 0
    top_k = None if args.all_labels else args.top_k
    kwargs = {"top_k": top_k} if (args.all_labels or args.top_k is not None) else {}
    results = clf(texts, batch_size=args.batch_size, **kwargs)
    for text, result in zip(texts, results):
        record = {"text": text, **result} if isinstance(result, dict) else {"text": text, "labels": result}
        print(json.dumps(record, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ortpipe", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_classify(subparsers)
    _add_doctor(subparsers)
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except OrtpipeError as exc:
        print(f"ortpipe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
