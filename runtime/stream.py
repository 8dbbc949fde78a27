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

import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from ortpipe.runtime.batching import check_batch_size
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.inputs import unicode_problem

IN_FORMATS = ("text", "csv", "tsv", "jsonl", "parquet")
OUT_FORMATS = ("jsonl", "csv", "parquet")
CHUNK_ROWS = 8192
PROGRESS_SUFFIX = ".ortpipe-progress"
_SUFFIXES = {".txt": "text", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".parquet": "parquet"}


@dataclass(frozen=True)
class Row:
    """One input row: its number, its text (or text pair), the columns to keep, or why it is bad."""

    number: int
    item: Any
    kept: dict
    error: str | None = None


@dataclass(frozen=True)
class StreamReport:
    """What :func:`classify_file` did: rows written (this run), bad rows among them, rows resumed past."""

    rows: int
    errors: int
    resumed_after: int


def format_of(path: str | Path, given: str | None, choices: Sequence[str], default: str) -> str:
    """The format named by ``given``, else by the file's extension, else ``default``."""
    if given is not None:
        if given not in choices:
            raise InputError(f"format must be one of {list(choices)}, got {given!r}")
        return given
    found = _SUFFIXES.get(Path(path).suffix.lower(), default)
    return found if found in choices else default


def _text_rows(path: Path, keep: Sequence[str]) -> Iterator[Row]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\r\n")
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Row(number, None, {}, f"line {number}: not valid UTF-8 (byte 0x{line[exc.start]:02x} at "
                                            f"byte {exc.start + 1} of the line)")
                continue
            kept = {"text": text} if "text" in keep else {}
            yield Row(number, text, kept, None if text.strip() else f"line {number}: empty")


def check_on_error(on_error: str) -> str:
    """``on_error`` if it is ``"raise"`` or ``"skip"``; else an :class:`InputError`."""
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


def check_record(record: dict, column: str, pair_column: str | None = None) -> tuple[Any, str | None]:
    """The text (or ``{"text", "text_pair"}``) that ``record`` holds, or what is wrong with it."""
    text = record.get(column)
    pair = record.get(pair_column) if pair_column else None
    if text is None or (pair_column and pair is None):
        problem = f"no value in {column if text is None else pair_column!r}"
    elif not isinstance(text, str) or (pair_column and not isinstance(pair, str)):
        problem = f"{column!r}{f' and {pair_column!r}' if pair_column else ''} must be text"
    elif not text.strip():
        problem = f"empty text in {column!r}"
    else:
        problem = unicode_problem(text) or (unicode_problem(pair) if pair_column else None)
        problem = f"not valid Unicode: {problem}" if problem else None
    if problem:
        return None, problem
    return ({"text": text, "text_pair": pair} if pair_column else text), None


def _record_rows(records: Iterator[tuple[int, dict | None, str | None]], where: str, column: str,
                 pair_column: str | None, keep: Sequence[str]) -> Iterator[Row]:
    """Rows from ``(number, record, error)``: the text, its pair, the kept columns, or what is wrong."""
    for number, record, error in records:
        if error is not None:
            yield Row(number, None, {}, f"{where} {number}: {error}")
            continue
        item, problem = check_record(record, column, pair_column)
        kept = {name: record.get(name) for name in keep}
        yield Row(number, item, kept, None if problem is None else f"{where} {number}: {problem}")


def _csv_records(path: Path, delimiter: str, needed: Sequence[str]):
    handle = open(path, encoding="utf-8", errors="surrogateescape", newline="")
    with handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        missing = [name for name in needed if name not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} in the header (it has {reader.fieldnames})")
        for number, record in enumerate(reader, start=1):
            yield number, record, None


def _jsonl_records(path: Path):
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, None, "not valid UTF-8"
                continue
            except ValueError as exc:
                yield number, None, f"not valid JSON ({exc.msg})"
                continue
            yield (number, record, None) if isinstance(record, dict) else (number, None, "not a JSON object")


def _parquet_records(path: Path, needed: Sequence[str]):
    pq = _pyarrow_parquet()
    source = pq.ParquetFile(path)
    missing = [name for name in needed if name not in source.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} (it has {source.schema_arrow.names})")
    number = 0
    for batch in source.iter_batches(batch_size=CHUNK_ROWS, columns=list(dict.fromkeys(needed))):
        for record in batch.to_pylist():
            number += 1
            yield number, record, None


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError("Parquet needs pyarrow: pip install 'ortpipe[files]'") from exc
    return pq


def read_rows(path: str | Path, fmt: str, column: str = "text", pair_column: str | None = None,
              field: str = "text", keep: Sequence[str] = ()) -> Iterator[Row]:
    """The rows of ``path`` one at a time (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")
    if fmt == "text":
        return _text_rows(path, keep)
    if fmt == "jsonl":
        return _record_rows(_jsonl_records(path), "line", field, pair_column, keep)
    needed = [column, *([pair_column] if pair_column else []), *keep]
    if fmt == "parquet":
        return _record_rows(_parquet_records(path, needed), "row", column, pair_column, keep)
    return _record_rows(_csv_records(path, "," if fmt == "csv" else "\t", needed), "row", column, pair_column, keep)


def count_rows(path: Path, fmt: str) -> int | None:
    """How many rows ``path`` holds, for the progress bar's ETA (CSV: lines, so approximate)."""
    if fmt == "parquet":
        return _pyarrow_parquet().ParquetFile(path).metadata.num_rows
    lines, ends_open = 0, False
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            ends_open = not block.endswith(b"\n")
    return lines + ends_open - (fmt in ("csv", "tsv"))


class _Output:
    """JSON Lines or CSV rows appended to a file (or stdout), flushed per chunk."""

    def __init__(self, handle: IO[str], fmt: str, columns: list[str], fresh: bool):
        self.handle, self.fmt = handle, fmt
        self._csv = None
        if fmt == "csv":
            self._csv = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            if fresh:
                self._csv.writeheader()

    def write(self, records: list[dict]) -> None:
        if self.fmt == "jsonl":
            self.handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            return
        self._csv.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()}
                            for r in records)


def output_columns(keep: Sequence[str], top_k: Any, numbered: bool = True, windows: bool = False) -> list[str]:
    """The columns of an output row: ``row``, the kept ones, the prediction, ``windows``, ``error``."""
    return [*(["row"] if numbered else []), *keep, *(["label", "score"] if top_k is None else ["labels"]),
            *(["windows"] if windows else []), "error"]


def output_kwargs(top_k: Any, window: Any = None, stride: Any = None, aggregate: Any = None,
                  return_windows: bool = False) -> dict:
    """The classifier's keyword arguments for a file's ``top_k`` (None, an int or ``"all"``) and window options."""
    kwargs = {} if top_k is None else {"top_k": None if top_k == "all" else top_k}
    if window is not None:
        kwargs.update(window=window, stride=stride, aggregate=aggregate, return_windows=return_windows)
    return kwargs


def parquet_schema(columns: Sequence[str]):
    """Output rows as Arrow: ``row`` an int, ``score`` a float, everything else text."""
    import pyarrow as pa

    types = {"row": pa.int64(), "score": pa.float64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in columns])


def parquet_table(records: list[dict], schema):
    """Output records as one Arrow table of ``schema`` (kept columns as text, ``labels`` as JSON text)."""
    import pyarrow as pa

    text = [name for name in schema.names if name not in ("row", "score")]
    rows = [{**{k: r.get(k) for k in schema.names}, **{k: _as_text(r.get(k)) for k in text}} for r in records]
    return pa.Table.from_pylist(rows, schema=schema)


class _ParquetOutput:
    """Parquet row groups, one per chunk; kept columns as text, ``labels`` as JSON text."""

    def __init__(self, path: Path, columns: list[str]):
        _pyarrow_parquet()
        self.schema = parquet_schema(columns)
        self.path, self.writer = path, None

    def write(self, records: list[dict]) -> None:
        pq = _pyarrow_parquet()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(parquet_table(records, self.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _progress_file(out: Path) -> Path:
    return out.with_name(out.name + PROGRESS_SUFFIX)


def _resume_point(out: Path) -> tuple[int, int]:
    """(input rows done, output bytes that hold them) from the sidecar; the output is cut back to those bytes."""
    sidecar = _progress_file(out)
    if not out.exists() or not sidecar.exists():
        return 0, 0
    try:
        done = json.loads(sidecar.read_text())
        rows, size = int(done["rows"]), int(done["bytes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot resume: {sidecar} is unreadable ({exc}); delete it and {out} to start over") from exc
    if out.stat().st_size < size:
        raise InputError(f"cannot resume: {out} is shorter than its progress record says; delete both to start over")
    with open(out, "r+b") as handle:
        handle.truncate(size)
    return rows, size


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
                  return_windows: bool = False) -> StreamReport:
    """Classify every row of ``source`` into ``out`` (None: JSON Lines on stdout), a chunk at a time.

    Args:
        keep: input columns copied to each output row (default: ``text`` for a text file, none otherwise).
        on_error: ``"raise"`` (an :class:`InputError` naming the first bad row; what came before it
            stays written) or ``"skip"`` (the row is written with an ``error`` field instead).
        resume: continue an interrupted run into the same ``out`` (JSON Lines or CSV).
        top_k: None for ``label``/``score``; an int for the K best labels; ``"all"`` for every label.
        window: classify long texts whole through windows of this many tokens (or ``"auto"``), as
            ``TextClassifier.__call__`` does; a row's windows are classified within its chunk.
        stride: tokens shared by consecutive windows.
        aggregate: ``"mean"``, ``"max"`` or ``"first"``.
        return_windows: add each window's span, label and score (a ``windows`` output column).
    """
    fmt = format_of(source, in_format, IN_FORMATS, "text")
    ofmt = "jsonl" if out is None else format_of(out, out_format, OUT_FORMATS, "jsonl")
    check_on_error(on_error)
    check_batch_size(chunk_rows, "chunk_rows")
    keep = list(("text",) if fmt == "text" else ()) if keep is None else list(keep)
    if resume and (out is None or ofmt == "parquet"):
        raise InputError("resume needs --out in JSON Lines or CSV (a Parquet file cut short has no footer)")
    rows = read_rows(source, fmt, column, pair_column, field, keep)
    clf.window_options(window, stride, aggregate, return_windows)  # refused before anything is written
    columns = output_columns(keep, top_k, windows=return_windows)
    done, _ = _resume_point(Path(out)) if resume else (0, 0)
    kwargs = output_kwargs(top_k, window, stride, aggregate, return_windows)
    bar = _progress_bar(Path(source), fmt, done) if progress else None
    written = errors = 0
    sink, handle = _open_output(out, ofmt, columns, appending=done > 0)
    try:
        chunk: list[Row] = []
        for row in rows:
            if row.number <= done:
                continue
            chunk.append(row)
            if len(chunk) == chunk_rows:
                errors += _write_chunk(clf, chunk, sink, handle, out, on_error, batch_size, kwargs, source)
                written += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                chunk = []
        if chunk:
            errors += _write_chunk(clf, chunk, sink, handle, out, on_error, batch_size, kwargs, source)
            written += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
        if isinstance(sink, _ParquetOutput):
            sink.close()
        elif out is not None:
            handle.close()
    if out is not None and _progress_file(Path(out)).exists():
        _progress_file(Path(out)).unlink()
    return StreamReport(written, errors, done)


def _open_output(out, ofmt: str, columns: list[str], appending: bool):
    if out is None:
        return _Output(sys.stdout, "jsonl", columns, fresh=True), sys.stdout
    if ofmt == "parquet":
        return _ParquetOutput(Path(out), columns), None
    handle = open(out, "a" if appending else "w", encoding="utf-8", newline="")
    return _Output(handle, ofmt, columns, fresh=not appending), handle


def classify_rows(clf, rows: Sequence[Row], batch_size: int | None = None, kwargs: dict | None = None,
                  numbered: bool = True) -> list[dict]:
    """Output records for ``rows`` in their order: the good ones classified in one call, the bad ones as errors."""
    good = [row for row in rows if row.error is None]
    results = iter(clf([row.item for row in good], batch_size=batch_size, **(kwargs or {}))) if good else iter(())
    records = [_record(row, next(results)) if row.error is None else {"row": row.number, **row.kept, "error": row.error}
               for row in rows]
    if not numbered:
        for record in records:
            del record["row"]
    return records


def _write_chunk(clf, chunk: list[Row], sink, handle, out, on_error: str, batch_size, kwargs: dict, source) -> int:
    """Classify one chunk's good rows, write all its rows in order, record the progress; returns its bad rows."""
    bad = [row for row in chunk if row.error is not None]
    if bad and on_error == "raise":
        good_before = [row for row in chunk if row.number < bad[0].number]
        if good_before:  # what precedes the bad row is written, so nothing before it is lost
            _write_chunk(clf, good_before, sink, handle, out, on_error, batch_size, kwargs, source)
        raise InputError(f"{source}, {bad[0].error} (pass --on-error skip to write it as an error row)")
    sink.write(classify_rows(clf, chunk, batch_size, kwargs))
    if handle is not None:
        handle.flush()
        if out is not None:
            os.fsync(handle.fileno())
            _progress_file(Path(out)).write_text(json.dumps({"rows": chunk[-1].number,
                                                             "bytes": Path(out).stat().st_size}))
    return len(bad)


def _progress_bar(source: Path, fmt: str, done: int):
    from tqdm import tqdm

    total = count_rows(source, fmt)
    return tqdm(total=total, initial=done, unit=" texts", file=sys.stderr, dynamic_ncols=True,
                desc=source.name)
