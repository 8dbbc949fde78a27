"""The ``ortpipe`` command: ``classify`` and ``doctor`` here (the rest registered by :mod:`ortpipe.cli`).

    ortpipe classify "This course is amazing!" --explain
    echo "good" | ortpipe classify --top-k 2
    ortpipe doctor --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ortpipe.runtime.call import Scoring
from ortpipe.runtime.load_options import add_backend_options
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.zero_shot_cli import add_zero_shot_arguments, print_zero_shot, zero_shot_of


def _columns(raw: str) -> list[str]:
    """``--keep id,title``: the column names, one value per flag (so ``--keep id "a text"`` keeps ``id`` only)."""
    names = [name.strip() for name in raw.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got {raw!r}")
    return names


def add_memory_argument(parser) -> None:
    """``--memory lean|fast|…`` (default ``$ORTPIPE_MEMORY`` or lean), for every command that loads a model."""
    from ortpipe.runtime.memory import ALIASES, DEFAULT_MEMORY, SETTINGS

    parser.add_argument("--memory", default=os.environ.get("ORTPIPE_MEMORY", DEFAULT_MEMORY),
                        choices=(*sorted(ALIASES), *SETTINGS),
                        help="ONNX Runtime memory: lean (default) caps a model call at 512 padded tokens and "
                             "gives back what a larger-than-usual batch took; fast keeps ONNX Runtime's arena "
                             "at its largest batch and the caller's batches whole (env ORTPIPE_MEMORY)")


ONE_TEXT_PER_CALL = (
    "ortpipe: dynamic int8 runs one text per call by default, so that a text's scores do not depend on the other "
    "texts of its batch; --workload bulk runs what is measured fastest here for many texts (static-int8 on "
    "OpenVINO, batch-invariant, where ortpipe[openvino] is installed), --batch-size 32 batches int8 (its scores "
    "then move by about 1e-3 with their neighbours)")


def _add_classify(subparsers) -> None:
    parser = subparsers.add_parser("classify", help="classify texts with a bundle (JSON lines out)",
                                   description="Classify texts given as arguments, in --file (one per "
                                               "line) or on stdin. Prints one JSON object per text.")
    parser.add_argument("texts", nargs="*", metavar="TEXT")
    parser.add_argument("--bundle", help="bundle folder (default: the default bundle)")
    parser.add_argument("--variant", help="fp32, optimized, int8, static-int8 … (default: the manifest's choice)")
    parser.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (--engine ray: per actor, "
                                                    "default 1)")
    add_backend_options(parser)
    parser.add_argument("--file", help="classify this file, streaming a chunk at a time: one text per line, CSV/TSV, "
                                       "JSON Lines or Parquet (by extension or --format)")
    parser.add_argument("--out", help="with --file: write here (.jsonl, .csv or .parquet; default: JSON Lines "
                                      "on stdout)")
    parser.add_argument("--format", dest="in_format", choices=("text", "csv", "tsv", "jsonl", "parquet"),
                        help="--file's format (default: from its extension; else one text per line)")
    parser.add_argument("--out-format", choices=("jsonl", "csv", "parquet"), help="default: from --out's extension")
    parser.add_argument("--column", default="text", help="CSV/TSV/Parquet column holding the text (default text)")
    parser.add_argument("--pair-column", help="column holding the second text of a pair")
    parser.add_argument("--field", default="text", help="JSON Lines field holding the text (default text)")
    parser.add_argument("--keep", type=_columns, action="extend", metavar="COLUMN[,COLUMN…]",
                        help="input columns copied into each output row, comma-separated or one per --keep (a "
                             "word after it is a TEXT, not a column); default: the text, for a text file")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="a bad row (empty, not UTF-8, missing column) stops the run with its row number "
                             "(raise), or is written with an error field (skip)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out")
    parser.add_argument("--chunk-rows", type=int, help="rows per chunk (default 8192; 2048 per actor call with "
                                                       "--engine ray)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="with --file: stream it here (local, default), or classify it on Ray Data into a "
                             "folder of Parquet files (ray: pip install 'ortpipe[ray]')")
    parser.add_argument("--address", help="--engine ray: the Ray cluster to join (auto, HOST:PORT); default: "
                                          "start a local Ray")
    parser.add_argument("--actors", type=int, help="--engine ray: classifier actors (default: one per --threads "
                                                   "CPUs of the cluster)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (it is shown only on a terminal)")
    parser.add_argument("--top-k", type=int, help="return the K best labels per text")
    parser.add_argument("--all-labels", action="store_true", help="return every label, best first")
    parser.add_argument("--batch-size", type=int,
                        help="texts per model call (default 32; 1 for dynamic int8, whose scores otherwise "
                             "depend on batch neighbours: see --workload)")
    parser.add_argument("--explain", action="store_true",
                        help="walk the four stages for each text: tokens, ids, logits, probabilities, prediction")
    add_scoring_arguments(parser)
    add_window_arguments(parser)
    parser.add_argument("--return-windows", action="store_true",
                        help="with --window: add each window's character span, label and score to each result")
    add_zero_shot_arguments(parser)
    add_memory_argument(parser)
    parser.set_defaults(run=_run_classify)


def threshold_value(raw: str) -> Any:
    """``--threshold``'s value: a number, ``auto``, or ``LABEL=NUMBER[,LABEL=NUMBER…]``."""
    if raw == "auto":
        return raw
    try:
        if "=" not in raw:
            return float(raw)
        pairs = [part.rsplit("=", 1) for part in raw.split(",") if part.strip()]
        return {label.strip(): float(value) for label, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, 'auto' or LABEL=NUMBER[,LABEL=NUMBER…], got {raw!r}") \
            from None


def add_scoring_arguments(parser) -> None:
    """``--raw-scores``, ``--threshold``, ``--explain-words``: scores to act on (see :class:`.call.Scoring`)."""
    parser.add_argument("--raw-scores", action="store_true",
                        help="the model's own probabilities, not divided by the bundle's fitted temperature")
    parser.add_argument("--threshold", type=threshold_value, metavar="P|auto|LABEL=P,…",
                        help="answer label null for a text whose top score is below P (multi-label: every label at "
                             "or above it); auto: the bundle's threshold for its target precision")
    parser.add_argument("--explain-words", action="store_true",
                        help="add each word's weight: how much the label's score drops without it (one more model "
                             "row per word)")


def scoring_of(args) -> Scoring:
    """The scoring arguments of a parsed command line."""
    return Scoring(calibrated=not args.raw_scores, threshold=args.threshold, explain=args.explain_words)


def window_value(raw: str) -> int | str:
    """``--window``'s value: ``auto`` or a number of tokens."""
    if raw == "auto":
        return raw
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens or 'auto', got {raw!r}") from None


def add_window_arguments(parser) -> None:
    """``--window N|auto``, ``--stride N``, ``--aggregate mean|max|first``: long texts classified whole."""
    from ortpipe.runtime.windows import AGGREGATES

    parser.add_argument("--window", type=window_value, metavar="N|auto",
                        help="classify each text whole through overlapping windows of N tokens (special tokens "
                             "included; auto: the bundle's recommended window) instead of its first max-length "
                             "tokens")
    parser.add_argument("--stride", type=int, help="with --window: tokens shared by consecutive windows (default: a "
                                                   "quarter of the window)")
    parser.add_argument("--aggregate", choices=AGGREGATES,
                        help="with --window: how window logits become one answer (default mean; max: a label found "
                             "in any window, for multi-label; first)")


def window_kwargs(args) -> dict:
    """The window arguments of a parsed command line, as ``TextClassifier.__call__`` takes them."""
    return {"window": args.window, "stride": args.stride, "aggregate": args.aggregate,
            "return_windows": getattr(args, "return_windows", False)}


def truncation_notice(truncated: int, total: int, max_length: int) -> str | None:
    """The line printed when texts were cut to the model's limit (None when none was)."""
    if not truncated:
        return None
    return (f"ortpipe: {truncated:,} of {total:,} texts were longer than the model's {max_length} tokens and were "
            "truncated; --window auto classifies them whole")


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
    return 0 if report["chosen"] is not None else 1  # load() without a variant would fail here


def _read_texts(args) -> list[str]:
    if args.texts:
        return list(args.texts)
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

    if args.file and (args.texts or args.explain):
        raise InputError("--file streams a file: give no TEXT arguments and no --explain with it")
    if args.engine == "ray":
        if not args.file or not args.out:
            raise InputError("--engine ray classifies a --file into an --out folder of Parquet files: give both")
        return args.ray_classify(args)  # set by ortpipe.cli, which sits above the distributed package
    if args.explain and args.window is not None:
        raise InputError("--explain walks one model call per text: give no --window with it")
    zero_shot = zero_shot_of(args)
    texts = None if args.file else _read_texts(args)
    clf = TextClassifier.load(args.bundle, variant=args.variant, provider=args.provider, threads=args.threads,
                              memory=args.memory, backend=args.backend, workload=args.workload)
    if clf.choice is not None:
        print(f"ortpipe: {clf.choice.why}", file=sys.stderr)
    clf.window_options(**window_kwargs(args))  # a bad window setting is refused before any text is read
    if args.file:
        return _classify_file(clf, args, zero_shot)
    if zero_shot is not None:
        print_zero_shot(clf, texts, zero_shot, args)
        _notice_truncation(clf, len(texts))
        return 0
    if args.explain:
        for text in texts:
            explain(clf, text)
        return 0
    top_k = None if args.all_labels else args.top_k
    kwargs = {"top_k": top_k} if (args.all_labels or args.top_k is not None) else {}
    results = clf(texts, batch_size=args.batch_size, **kwargs, **window_kwargs(args), **scoring_of(args).as_kwargs())
    for text, result in zip(texts, results):
        record = {"text": text, **result} if isinstance(result, dict) else {"text": text, "labels": result}
        print(json.dumps(record, ensure_ascii=False))
    _notice_truncation(clf, len(texts))
    return 0


def _notice_truncation(clf, total: int) -> None:
    notice = truncation_notice(clf.truncated_texts, total, clf.manifest.max_length)
    if notice:
        print(notice, file=sys.stderr)


def _classify_file(clf, args, zero_shot=None) -> int:
    from ortpipe.runtime.stream import CHUNK_ROWS, classify_file

    top_k = "all" if args.all_labels else args.top_k
    if args.batch_size is None and clf.default_batch_size() == 1 and not args.quiet:
        print(ONE_TEXT_PER_CALL, file=sys.stderr)
    report = classify_file(clf, args.file, args.out, in_format=args.in_format, out_format=args.out_format,
                           column=args.column, pair_column=args.pair_column, field=args.field, keep=args.keep,
                           on_error=args.on_error, resume=args.resume, chunk_rows=args.chunk_rows or CHUNK_ROWS,
                           batch_size=args.batch_size, top_k=top_k,
                           progress=not args.quiet and sys.stderr.isatty(), scoring=scoring_of(args),
                           zero_shot=zero_shot, **window_kwargs(args))
    if args.out:
        resumed = f", after {report.resumed_after} rows done before" if report.resumed_after else ""
        print(f"ortpipe: {report.rows} rows written to {args.out} ({report.errors} with an error){resumed}",
              file=sys.stderr)
    _notice_truncation(clf, report.rows - report.errors)
    return 0


def add_commands(subparsers) -> None:
    """``classify`` and ``doctor``."""
    _add_classify(subparsers)
    _add_doctor(subparsers)
