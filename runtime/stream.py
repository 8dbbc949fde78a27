"""Classify a file of any size: read it in chunks, classify each chunk, write it in input order.

    from ortpipe.runtime import TextClassifier
    from ortpipe.runtime.stream import classify_file

    clf = TextClassifier.load()
    classify_file(clf, "reviews.csv", "labels.jsonl", column="review", keep=["id"])

Peak memory is one chunk (``chunk_rows`` rows, 8,192 by default) whatever the
file's size. Each chunk goes through the classifier's batching loop (sorted by
length within the chunk) and is written, flushed and recorded in a sidecar
file ``OUT.ortpipe-progress`` before the next is read; ``resume=True`` after an
interruption truncates OUT to the last recorded chunk and continues from there,
so the finished file is the same as an uninterrupted run's.

Formats in: ``text`` (one text per line), ``csv``/``tsv`` (a header row;
``column``, optional ``pair_column``), ``jsonl`` (``field``), ``parquet``
(needs pyarrow). Out: ``jsonl`` (default), ``csv``, ``parquet`` (no resume).
Every output row has ``row`` (the input's line or data-row number), the
``keep`` columns, then ``label``/``score`` (or ``labels``), or ``error``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from itertools import islice
from typing import Any, Iterator, Sequence

from ortpipe.runtime.batching import check_batch_size
from ortpipe.runtime.call import UNSET, CallOptions, Scoring
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.inputs import normalize_inputs
from ortpipe.runtime.progress import PROGRESS_SUFFIX, Progress  # noqa: F401 (PROGRESS_SUFFIX: re-exported)
from ortpipe.runtime.readers import (CHUNK_ROWS, IN_FORMATS, FileSpec, Row, check_on_error,  # noqa: F401
                                     check_record, count_rows, format_of, read_rows)
from ortpipe.runtime.zero_shot import ZeroShotCall, ZeroShotOptions, check_hypotheses, pair_options
from ortpipe.runtime.zero_shot_classifier import ZeroShotClassifier
from ortpipe.runtime.sinks import (OUT_FORMATS, check_output, open_sink, output_columns,  # noqa: F401
                                   parquet_schema, parquet_table)


@dataclass(frozen=True)
class StreamReport:
    """What :func:`classify_file` did: rows written (this run), bad rows among them, rows resumed past."""

    rows: int
    errors: int
    resumed_after: int


def file_options(clf, top_k: Any, batch_size: int | None = None, window: Any = None, stride: Any = None,
                 aggregate: Any = None, return_windows: bool = False, scoring: Scoring = Scoring()) -> CallOptions:
    """The call options of a file's rows: ``top_k`` None (one label), an int, or ``"all"`` (every label)."""
    return CallOptions.parse(clf, top_k=UNSET if top_k is None else top_k, batch_size=batch_size, window=window,
                             stride=stride, aggregate=aggregate, return_windows=return_windows,
                             **scoring.as_kwargs())


def zero_shot_file(clf, zero_shot: ZeroShotOptions, spec: FileSpec, batch_size: int | None, window: Any,
                   stride: Any, aggregate: Any) -> tuple[ZeroShotClassifier, ZeroShotCall]:
    """The executor and options of a file classified zero-shot; a pair column is refused."""
    if spec.pair_column is not None:
        raise InputError("zero-shot classifies single texts (each candidate label makes the pair): give no "
                         "pair column with candidate labels")
    check_hypotheses(clf.tokenizer, zero_shot)
    call = pair_options(clf, batch_size=batch_size, window=window, stride=stride, aggregate=aggregate)
    return ZeroShotClassifier(clf), ZeroShotCall(call, zero_shot)


def _record(row: Row, result: Any) -> dict:
    out = {"row": row.number, **row.kept}
    if isinstance(result, dict):
        return {**out, **result}
    return {**out, "labels": result}


def classify_file(clf, source: str | Path, out: str | Path | None = None, *, in_format: str | None = None,
                  out_format: str | None = None, column: str = "text", pair_column: str | None = None,
                  field: str = "text", keep: Sequence[str] | None = None, on_error: str = "raise",
                  resume: bool = False, chunk_rows: int = CHUNK_ROWS, batch_size: int | None = None,
                  top_k: Any = None, progress: bool = False, window: int | str | None = None,
                  stride: int | None = None, aggregate: str | None = None,
                  return_windows: bool = False, scoring: Scoring = Scoring(),
                  zero_shot: ZeroShotOptions | None = None) -> StreamReport:
    """Classify every row of ``source`` into ``out`` (None: JSON Lines on stdout), a chunk at a time.

    Args:
        keep: input columns copied to each output row (default: ``text`` for a text file, none otherwise).
        on_error: ``"raise"`` (an :class:`InputError` naming the first bad row; what came before it
            stays written) or ``"skip"`` (the row is written with an ``error`` field instead).
        resume: continue an interrupted run into the same ``out`` (JSON Lines or CSV), once the input, the
            options and what was written are checked to be those of that run.
        top_k: None for ``label``/``score``; an int for the K best labels; ``"all"`` for every label.
        window: classify long texts whole through windows of this many tokens (or ``"auto"``), as
            ``TextClassifier.__call__`` does; a row's windows are classified within its chunk.
        stride: tokens shared by consecutive windows.
        aggregate: ``"mean"``, ``"max"`` or ``"first"``.
        return_windows: add each window's span, label and score (a ``windows`` output column).
        scoring: calibrated or raw scores, a threshold, explanations (an ``explanation`` column).
        zero_shot: candidate labels for an NLI bundle: ``labels`` and ``scores`` columns, best first.
    """
    spec = FileSpec.of(source, in_format, column, pair_column, field, keep)
    ofmt = "jsonl" if out is None else format_of(out, out_format, OUT_FORMATS, "jsonl")
    check_on_error(on_error)
    check_batch_size(chunk_rows, "chunk_rows")
    if resume and (out is None or ofmt == "parquet"):
        raise InputError("resume needs --out in JSON Lines or CSV (a Parquet file cut short has no footer)")
    rows = spec.rows()
    if zero_shot is None:  # options are checked before anything is written
        call = file_options(clf, top_k, batch_size, window, stride, aggregate, return_windows, scoring)
        columns = output_columns(spec.keep, call.one_dict, windows=return_windows, explain=call.explain)
    else:
        clf, call = zero_shot_file(clf, zero_shot, spec, batch_size, window, stride, aggregate)
        columns = ["row", *spec.keep, "labels", "scores", "error"]
    out = None if out is None else Path(out)
    tracker = resumed = None
    if out is not None:
        check_output(spec.path, out)
        tracker = Progress(out, spec.path, _fingerprinted(spec, ofmt, call, on_error))
        resumed = tracker.begin(resume)
    done = resumed[0] if resumed else 0
    sink = open_sink(out, ofmt, columns, tracker, resumed)
    written, errors = _stream(clf, rows, done, sink, chunk_rows, on_error, call, source,
                              _progress_bar(spec.path, spec.format, done) if progress else None)
    if tracker is not None:
        tracker.remove()
    return StreamReport(written, errors, done)


def _fingerprinted(spec: FileSpec, out_format: str, call: CallOptions, on_error: str) -> dict:
    """What a resumed run must share with the interrupted one: the input's reading and the output's shape."""
    shaping = {k: _plain(v) for k, v in asdict(call).items()
               if k not in ("batch_size", "sort_by_length", "max_batch_tokens")}
    return {"format": spec.format, "out_format": out_format, "column": spec.column, "pair_column": spec.pair_column,
            "field": spec.field, "keep": list(spec.keep), "call": shaping, "on_error": on_error}


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays as lists, for the JSON fingerprint."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.tolist() if hasattr(value, "tolist") else value


def _stream(clf, rows, done: int, sink, chunk_rows: int, on_error: str, call: CallOptions, source,
            bar) -> tuple[int, int]:
    """Every row after ``done`` through ``sink`` a chunk at a time: (rows written, rows with an error)."""
    written = errors = 0
    try:
        for chunk in _chunks((row for row in rows if row.number > done), chunk_rows):
            errors += _write_chunk(clf, chunk, sink, on_error, call, source)
            written += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
        sink.close()
    return written, errors


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    """``rows`` in lists of ``size`` (the last one shorter), read one list at a time."""
    while chunk := list(islice(rows, size)):
        yield chunk


def classify_rows(clf, rows: Sequence[Row], call: CallOptions, numbered: bool = True) -> list[dict]:
    """Output records for ``rows`` in their order: the good ones classified in one call, the bad ones as errors."""
    good = [row for row in rows if row.error is None]
    results = iter(clf.classify(normalize_inputs([row.item for row in good]).items, call)) if good else iter(())
    records = [_record(row, next(results)) if row.error is None else {"row": row.number, **row.kept, "error": row.error}
               for row in rows]
    if not numbered:
        for record in records:
            del record["row"]
    return records


def _write_chunk(clf, chunk: list[Row], sink, on_error: str, call: CallOptions, source) -> int:
    """Classify one chunk's good rows, write all its rows in order, record the progress; returns its bad rows."""
    bad = [row for row in chunk if row.error is not None]
    if bad and on_error == "raise":
        good_before = [row for row in chunk if row.number < bad[0].number]
        if good_before:  # what precedes the bad row is written, so nothing before it is lost
            _write_chunk(clf, good_before, sink, on_error, call, source)
        raise InputError(f"{source}, {bad[0].error} (pass --on-error skip to write it as an error row)")
    sink.write(classify_rows(clf, chunk, call))
    sink.checkpoint(chunk[-1].number)
    return len(bad)


def _progress_bar(source: Path, fmt: str, done: int):
    from tqdm import tqdm

    total = count_rows(source, fmt)
    return tqdm(total=total, initial=done, unit=" texts", file=sys.stderr, dynamic_ncols=True,
                desc=source.name)
