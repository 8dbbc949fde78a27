"""Where classified rows go: one sink per output format, each with ``write``, ``checkpoint`` and ``close``.

    sink = open_sink(out, "jsonl", columns, progress)    # nothing is opened yet
    sink.write(records)                                  # the file is opened (or appended to) on the first write
    sink.checkpoint(rows_done)                           # flushed, fsynced, progress recorded
    sink.close()

A file sink refuses an output that is the input (same device and inode, links included), names a folder
that is missing or read-only before anything runs, and turns a failed write (disk full) into an
:class:`~ortpipe.runtime.errors.InputError` that says what was kept and how to resume.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.progress import Progress

OUT_FORMATS = ("jsonl", "csv", "parquet")


def output_columns(keep: Sequence[str], one_dict: bool, numbered: bool = True, windows: bool = False,
                   explain: bool = False) -> list[str]:
    """The columns of an output row: ``row``, the kept ones, the prediction, ``windows``, ``error``.

    ``one_dict``: one label per text (``label``, ``score`` and, explained, ``explanation``), else ``labels``.
    """
    answer = ["label", "score", *(["explanation"] if explain else [])] if one_dict else ["labels"]
    return [*(["row"] if numbered else []), *keep, *answer, *(["windows"] if windows else []), "error"]


def check_output(source: Path, out: Path) -> None:
    """Refuse an ``out`` that is ``source`` itself, or that lies in a folder that is missing or read-only."""
    if out.exists() and source.exists() and os.path.samefile(source, out):
        raise InputError(f"--out {out} is the input file itself: writing it would destroy the input; choose "
                         "another output")
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"cannot write {out}: {'it' if out.exists() else 'its folder'} is not writable")


class StdoutSink:
    """JSON Lines on standard output."""

    def write(self, records: list[dict]) -> None:
        sys.stdout.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    def checkpoint(self, rows: int) -> None:
        sys.stdout.flush()

    def close(self) -> None:
        sys.stdout.flush()


class FileSink:
    """JSON Lines or CSV appended to ``out``; each checkpoint flushes, fsyncs and records the progress."""

    def __init__(self, out: Path, fmt: str, columns: list[str], progress: Progress, resumed: tuple):
        self.out, self.fmt, self.columns, self.progress = out, fmt, columns, progress
        _, self._size, self._digest = resumed  # the bytes already written, and their running sha256
        self._handle = None

    def write(self, records: list[dict]) -> None:
        """The records' text, fed to the running sha256 as the UTF-8 bytes the file gets, then written."""
        text = self._header() + self._text(records)
        self._digest.update(text.encode("utf-8"))
        try:
            if self._handle is None:
                self._handle = open(self.out, "a" if self._size else "w", encoding="utf-8", newline="")
            self._handle.write(text)
        except OSError as exc:
            raise self._failed(exc) from exc

    def checkpoint(self, rows: int) -> None:
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._size = self.out.stat().st_size
            self.progress.save(rows, self._size, self._digest.hexdigest())
        except OSError as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.close()
            except OSError:  # what it could not flush was never recorded as done; the write's error is raised
                pass

    def _header(self) -> str:
        """The CSV header, before the first row of a file written from its start."""
        if self.fmt != "csv" or self._size or self._handle is not None:
            return ""
        return self._text([dict(zip(self.columns, self.columns))])

    def _text(self, records: list[dict]) -> str:
        if self.fmt == "jsonl":
            return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n").writerows(
            {k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in records)
        return buffer.getvalue()

    def _failed(self, exc: OSError) -> InputError:
        return InputError(f"cannot write {self.out}: {exc.strerror or exc}; the rows recorded as done are kept: "
                          "free the space (or fix the folder) and run again with --resume")


class ParquetSink:
    """Parquet row groups, one per chunk; kept columns as text, ``labels`` as JSON text (no resume)."""

    def __init__(self, out: Path, columns: list[str]):
        from ortpipe.runtime.readers import pyarrow_parquet

        pyarrow_parquet()
        self.schema = parquet_schema(columns)
        self.out, self.writer = out, None

    def write(self, records: list[dict]) -> None:
        from ortpipe.runtime.readers import pyarrow_parquet

        try:
            if self.writer is None:
                self.writer = pyarrow_parquet().ParquetWriter(self.out, self.schema)
            self.writer.write_table(parquet_table(records, self.schema))
        except OSError as exc:
            raise InputError(f"cannot write {self.out}: {exc}") from exc

    def checkpoint(self, rows: int) -> None:
        pass

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def open_sink(out: Path | None, fmt: str, columns: list[str], progress: Progress | None = None,
              resumed: tuple | None = None):
    """The sink for ``out`` (None: stdout) in ``fmt``; a file is opened at its first write."""
    if out is None:
        return StdoutSink()
    if fmt == "parquet":
        return ParquetSink(out, columns)
    return FileSink(out, fmt, columns, progress, resumed)


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


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
