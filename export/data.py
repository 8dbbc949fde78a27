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


def read_labelled_tsv(path: str | Path, limit: int | None = None,
                      label2id: dict[str, int] | None = None, multi_label: bool = False) -> LabelledTexts:
    """Read a ``sentence<TAB>label`` file with a header row.

    Args:
        path: the TSV file, e.g. ``../shared/data/sst2/test.tsv``.
        limit: keep only the first ``limit`` rows.
        label2id: the model's label names (``billing`` → 2, any case): a label may then be a name or an id.
        multi_label: each label cell is a comma-separated list (maybe empty) of labels; ``labels`` then
            holds a list of ids per row.

    Raises:
        DataError: the file is missing, has no such columns, or a label is neither an id nor a known name.
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
            where = f"{path}:{line_no}"
            cell = row["label"] or ""
            labels.append([_label_id(part, label2id, where) for part in cell.split(",") if part.strip()]
                          if multi_label else _label_id(cell, label2id, where))
            texts.append(row["sentence"].strip())
            if limit is not None and len(texts) >= limit:
                break
    if not texts:
        raise DataError(f"{path}: no rows")
    return LabelledTexts(path=path, texts=texts, labels=labels)


def _label_id(raw, label2id: dict[str, int] | None, where: str) -> int:
    """A label as the model's id: an integer, or (with ``label2id``) one of its names in any case."""
    try:
        return int(raw)
    except (TypeError, ValueError):
        pass
    by_name = {name.lower(): index for name, index in (label2id or {}).items()}
    if isinstance(raw, str) and raw.strip().lower() in by_name:
        return by_name[raw.strip().lower()]
    known = f"; the model's labels are {sorted(label2id, key=label2id.get)}" if label2id else ""
    raise DataError(f"{where}: label {raw!r} is not an integer label id, nor one of the model's label "
                    f"names{known}")


def sst2_dir() -> Path:
    """Where SST-2 lies beside a checkout: ``$ORTPIPE_SST2_DIR`` or ``../shared/data/sst2``."""
    import os

    env = os.environ.get("ORTPIPE_SST2_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2"
