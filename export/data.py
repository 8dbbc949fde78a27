"""Labelled sentence sets in the GLUE SST-2 layout (``sentence<TAB>label``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ortpipe.runtime.errors import OrtpipeError


class DataError(OrtpipeError):
    """A labelled data file is missing or malformed."""


@dataclass(frozen=True)
class LabelledTexts:
    """Parallel lists of texts and integer labels read from one file."""

    path: Path
    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def read_labelled_tsv(path: str | Path, limit: int | None = None) -> LabelledTexts:
    """Read a ``sentence<TAB>label`` file with a header row.

    Args:
        path: the TSV file, e.g. ``../shared/data/sst2/test.tsv``.
        limit: keep only the first ``limit`` rows.

    Raises:
        DataError: the file is missing, has no such columns, or a label is not an int.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labelled data file not found: {path}")
    texts: list[str] = []
    labels: list[int] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"sentence", "label"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: header lacks column(s) {sorted(missing)}; "
                            "expected 'sentence<TAB>label'")
        for line_no, row in enumerate(reader, start=2):
            try:
                labels.append(int(row["label"]))
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path}:{line_no}: label {row['label']!r} is not an integer") from exc
            texts.append(row["sentence"].strip())
            if limit is not None and len(texts) >= limit:
                break
    if not texts:
        raise DataError(f"{path}: no rows")
    return LabelledTexts(path=path, texts=texts, labels=labels)


def sst2_dir() -> Path:
    """Where SST-2 lies beside a checkout: ``$ORTPIPE_SST2_DIR`` or ``../shared/data/sst2``."""
    import os

    env = os.environ.get("ORTPIPE_SST2_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2"
