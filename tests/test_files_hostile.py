"""What a hostile probe broke in ``classify --file`` (issue 27, cases 2, 3, 9 and 12), through the real CLI."""

from __future__ import annotations

import json
import os

import pytest

from ortpipe.runtime import InputError, TextClassifier
from ortpipe.cli import main
from ortpipe.runtime.stream import PROGRESS_SUFFIX, classify_file

TEXTS = ["a fine film", "dull and long", "I loved every minute of it", "not good", "great acting"]


@pytest.fixture(scope="module")
def clf(bert_bundle):
    return TextClassifier.load(bert_bundle, variant="optimized")


def _cli(bundle, *args) -> int:
    return main(["classify", "--bundle", str(bundle), "--variant", "optimized", *map(str, args)])


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("spell", ["same", "dotted", "symlink", "hardlink"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(bert_bundle, tmp_path, capsys, spell):
    """Case 2: --out equal to --file (however spelled) never truncates the input."""
    source = tmp_path / "same.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    before = source.read_bytes()
    out = {"same": source, "dotted": tmp_path / "." / "." / "same.jsonl", "symlink": tmp_path / "link.jsonl",
           "hardlink": tmp_path / "hard.jsonl"}[spell]
    if spell == "symlink":
        out.symlink_to(source)
    if spell == "hardlink":
        os.link(source, out)
    assert _cli(bert_bundle, "--file", source, "--out", out) == 2
    assert "is the input file itself" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_an_unbalanced_quote_is_an_error_naming_its_line_or_a_skipped_row(clf, tmp_path):
    """Case 3: rows after an unclosed quote are never merged silently into one field."""
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,a fine film\n2,"dull and long\n3,not good\n4,great acting\n5,ok then\n')
    with pytest.raises(InputError, match=r"row 2: malformed CSV from line 3"):
        classify_file(clf, source, tmp_path / "raised.jsonl", keep=["id"])
    report = classify_file(clf, source, tmp_path / "out.jsonl", keep=["id"], on_error="skip")
    rows = _jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows if "error" not in r] == ["1", "3", "4", "5"]
    assert report.errors == 1 and "quote" in rows[1]["error"]
    assert [r["label"] for r in rows if "error" not in r] == [r["label"] for r in clf(
        ["a fine film", "not good", "great acting", "ok then"])]


def test_a_csv_field_over_128_kib_is_read_whole(clf, tmp_path):
    """Case 3: a long document in a CSV field is classified, through windows."""
    long = " ".join(["wonderful acting"] * 40_000)  # 680 KB
    source = tmp_path / "long.csv"
    source.write_text(f'id,text\n1,"{long}"\n2,short\n')
    report = classify_file(clf, source, tmp_path / "out.jsonl", keep=["id"], window=128)
    assert report.rows == 2 and report.errors == 0
    assert _jsonl(tmp_path / "out.jsonl")[0]["label"] == clf(long, window=128)[0]["label"]


def _progress_of(out):
    return out.with_name(out.name + PROGRESS_SUFFIX)


@pytest.fixture
def killed_run(clf, tmp_path):
    """(source, out, the uninterrupted output): a 12-row run stopped for real after its first chunk of 4."""
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("".join(f"{t} {i}\n" for i, t in enumerate(TEXTS * 3) if i < 12))
    classify_file(clf, source, tmp_path / "whole.jsonl", chunk_rows=4)
    class Stop(Exception):
        pass

    class StopsAfterFirstChunk:
        """The real classifier, interrupted as its second chunk begins (as a kill would)."""

        def __init__(self):
            self.calls = 0

        def __getattr__(self, name):
            return getattr(clf, name)

        def classify(self, items, options):
            self.calls += 1
            if self.calls > 1:
                raise Stop()
            return clf.classify(items, options)

    with pytest.raises(Stop):
        classify_file(StopsAfterFirstChunk(), source, out, chunk_rows=4)
    assert _progress_of(out).exists()
    return source, out, (tmp_path / "whole.jsonl").read_bytes()


def test_resume_after_a_stop_is_byte_identical(clf, killed_run):
    source, out, whole = killed_run
    classify_file(clf, source, out, chunk_rows=4, resume=True)
    assert out.read_bytes() == whole and not _progress_of(out).exists()


def test_resume_refuses_an_edited_output(clf, killed_run):
    """Case 9: an output line edited since is refused, not cut mid-line."""
    source, out, _ = killed_run
    data = bytearray(out.read_bytes())
    data[10:12] = b"XX"
    out.write_bytes(bytes(data))
    with pytest.raises(InputError, match="are not what this run wrote"):
        classify_file(clf, source, out, chunk_rows=4, resume=True)


def test_resume_refuses_a_changed_input(clf, killed_run):
    """Case 9: rows inserted at the top of the input between runs are refused, not misattributed."""
    source, out, _ = killed_run
    source.write_text("".join(f"new {i}\n" for i in range(10)) + source.read_text())
    with pytest.raises(InputError, match="the input file changed"):
        classify_file(clf, source, out, chunk_rows=4, resume=True)


def test_resume_refuses_other_options(clf, killed_run):
    """Case 9: --top-k changed on resume would give one file two schemas: refused."""
    source, out, _ = killed_run
    with pytest.raises(InputError, match="the options differ"):
        classify_file(clf, source, out, chunk_rows=4, resume=True, top_k="all")


def test_the_progress_record_is_replaced_atomically(clf, killed_run):
    source, out, _ = killed_run
    assert not list(out.parent.glob("*.tmp"))
    assert set(json.loads(_progress_of(out).read_text())) >= {"rows", "bytes", "sha256", "input", "options"}


def test_unwritable_outputs_and_a_truncated_parquet_are_errors_not_tracebacks(bert_bundle, tmp_path, capsys):
    """Case 12: --out in a missing or read-only folder, and a Parquet file cut short."""
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    source = tmp_path / "in.txt"
    source.write_text("".join(t + "\n" for t in TEXTS))
    assert _cli(bert_bundle, "--file", source, "--out", tmp_path / "missing" / "out.jsonl") == 2
    assert "does not exist" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root writes anywhere: then only the missing folder is checked
            assert _cli(bert_bundle, "--file", source, "--out", locked / "out.jsonl") == 2
            assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
    table = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": TEXTS * 100}), table)
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    assert _cli(bert_bundle, "--file", table, "--out", tmp_path / "out.jsonl") == 2
    err = capsys.readouterr().err
    assert "not a readable Parquet file" in err and "Traceback" not in err


def test_a_full_disk_is_an_error_that_says_how_to_resume(bert_bundle, tmp_path, capsys):
    """Case 12: a write that fails for want of space (/dev/full) is an error naming the file and --resume."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    source = tmp_path / "in.txt"
    source.write_text("".join(t + "\n" for t in TEXTS))
    full = tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")
    assert _cli(bert_bundle, "--file", source, "--out", full) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err


def test_a_run_refused_before_its_first_row_leaves_no_output_file(bert_bundle, tmp_path, capsys):
    """Issue 30, item 11: a failed classify --out left an empty file; the output is opened at its first write."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": ""}\n{"text": "fine"}\n')
    out = tmp_path / "out.jsonl"
    assert _cli(bert_bundle, "--file", source, "--out", out) == 2
    assert "line 1: empty text" in capsys.readouterr().err and not out.exists()
