"""Reading a file's rows, one at a time, for :func:`~ortpipe.runtime.stream.classify_file` and Ray Data.

Formats: ``text`` (one text per line), ``csv``/``tsv`` (a header row; ``column``, optional
``pair_column``), ``jsonl`` (``field``), ``parquet`` (needs pyarrow). A row that cannot be read is a
:class:`Row` with an ``error`` naming its line, never a silent merge or a traceback.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.inputs import unicode_problem

IN_FORMATS = ("text", "csv", "tsv", "jsonl", "parquet")
CHUNK_ROWS = 8192
MAX_FIELD_CHARS = 1 << 26  # a CSV field may hold a 64 MiB document (Python's csv stops at 128 KiB by default)
SUFFIXES = {".txt": "text", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".parquet": "parquet"}


@dataclass(frozen=True)
class Row:
    """One input row: its number, its text (or text pair), the columns to keep, or why it is bad."""

    number: int
    item: Any
    kept: dict
    error: str | None = None


def format_of(path: str | Path, given: str | None, choices: Sequence[str], default: str) -> str:
    """The format named by ``given``, else by the file's extension, else ``default``."""
    if given is not None:
        if given not in choices:
            raise InputError(f"format must be one of {list(choices)}, got {given!r}")
        return given
    found = SUFFIXES.get(Path(path).suffix.lower(), default)
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
    """``(number, record, error)`` per data row. A quote that never closes, or a row with more fields than the
    header, is an error row, and reading goes on from the next line: rows are never merged silently."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))  # long documents fit in a field
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        lines = _Lines(handle)
        header = next(csv.reader(lines, delimiter=delimiter, strict=True), None) or []
        missing = [name for name in needed if name not in header]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} in the header (it has {header})")
        number = 0
        while True:
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            try:
                for values in reader:
                    lines.record_done()
                    if not values:  # a blank line is no row, as csv.DictReader reads it
                        continue
                    number += 1
                    if len(values) > len(header):
                        yield number, None, (f"{len(values)} fields where the header has {len(header)} (line "
                                             f"{lines.start}; a delimiter inside an unquoted text?)")
                        continue
                    yield number, dict(zip(header, values + [None] * (len(header) - len(values)))), None
                return
            except csv.Error as exc:
                number += 1
                yield number, None, (f"malformed CSV from line {lines.start} ({exc}): a quote that opens a field "
                                     "and never closes would merge the rest of the file into it")
                lines.restart_after_first()


class _Lines:
    """A file's lines for ``csv.reader``, remembering those of the record being read, to read again from the
    line after a malformed record's first one."""

    def __init__(self, handle):
        self._handle, self._current, self._again = handle, [], []
        self.start, self._read = 1, 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._again.pop() if self._again else next(self._handle)
        self._read += 1
        self._current.append(line)
        return line

    def record_done(self) -> None:
        self._current = []
        self.start = self._read + 1

    def restart_after_first(self) -> None:
        """Read again every line of the failed record but its first."""
        self._again.extend(reversed(self._current[1:]))
        self._read -= len(self._current) - 1
        self._current = []
        self.start = self._read + 1


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
    pq = pyarrow_parquet()
    try:
        source = pq.ParquetFile(path)
        missing = [name for name in needed if name not in source.schema_arrow.names]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} (it has {source.schema_arrow.names})")
        number = 0
        for batch in source.iter_batches(batch_size=CHUNK_ROWS, columns=list(dict.fromkeys(needed))):
            for record in batch.to_pylist():
                number += 1
                yield number, record, None
    except InputError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise InputError(f"{path}: not a readable Parquet file ({exc}); is it cut short or of another format?") \
            from exc


def pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError("Parquet needs pyarrow: pip install 'ortpipe[files]'") from exc
    return pq


@dataclass(frozen=True)
class FileSpec:
    """Which file, in which format, which columns hold the text (and its pair), and which columns are kept."""

    path: Path
    format: str
    column: str = "text"
    pair_column: str | None = None
    field: str = "text"
    keep: tuple[str, ...] = ()

    @classmethod
    def of(cls, path: str | Path, in_format: str | None = None, column: str = "text", pair_column: str | None = None,
           field: str = "text", keep: Sequence[str] | None = None) -> "FileSpec":
        """The spec of ``path``: its format from ``in_format`` or its extension; ``keep`` None: the text of a
        text file, nothing otherwise."""
        fmt = format_of(path, in_format, IN_FORMATS, "text")
        return cls(Path(path), fmt, column, pair_column, field,
                   tuple(("text",) if fmt == "text" else ()) if keep is None else tuple(keep))

    @property
    def text_column(self) -> str:
        """The column (or field) the text is in, as a table of the file names it."""
        return "text" if self.format == "text" else self.field if self.format == "jsonl" else self.column

    def rows(self) -> Iterator[Row]:
        """The file's rows, one at a time."""
        return read_rows(self.path, self.format, self.column, self.pair_column, self.field, self.keep)


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
        return pyarrow_parquet().ParquetFile(path).metadata.num_rows
    lines, ends_open = 0, False
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            ends_open = not block.endswith(b"\n")
    return lines + ends_open - (fmt in ("csv", "tsv"))
