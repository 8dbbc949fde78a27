"""Streaming a file: every format in and out, bad rows, bounded memory, and a resume after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ortpipe.runtime import InputError, TextClassifier
from ortpipe.runtime.stream import PROGRESS_SUFFIX, classify_file

pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")

TEXTS = ["a fine film", "dull and long", "I loved every minute of it", "not good", "great, great acting",
         "the plot makes no sense", "ok", "a masterpiece of boredom"]


@pytest.fixture(scope="module")
def clf(bert_bundle):
    return TextClassifier.load(bert_bundle, variant="optimized")


def _expected(clf, texts):
    return [r["label"] for r in clf(texts)]


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_inputs(folder, texts):
    """The same rows as a text file, CSV, TSV, JSON Lines and Parquet, each with an id column."""
    ids = [f"id-{i}" for i in range(len(texts))]
    (folder / "in.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    for name, delimiter in (("in.csv", ","), ("in.tsv", "\t")):
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter=delimiter)
            writer.writerow(["id", "text"])
            writer.writerows(zip(ids, texts))
    (folder / "in.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)))
    pq.write_table(pa.table({"id": ids, "text": texts}), folder / "in.parquet")
    return ids


@pytest.mark.parametrize("source", ["in.txt", "in.csv", "in.tsv", "in.jsonl", "in.parquet"])
@pytest.mark.parametrize("out", ["out.jsonl", "out.csv", "out.parquet"])
def test_every_format_in_and_out_gives_the_in_process_labels(clf, tmp_path, source, out):
    ids = _write_inputs(tmp_path, TEXTS)
    keep = ["text"] if source == "in.txt" else ["id"]
    report = classify_file(clf, tmp_path / source, tmp_path / out, keep=keep, chunk_rows=3)
    assert report.rows == len(TEXTS) and report.errors == 0
    if out.endswith(".jsonl"):
        rows = _read_jsonl(tmp_path / out)
    elif out.endswith(".csv"):
        with open(tmp_path / out, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    else:
        rows = pq.read_table(tmp_path / out).to_pylist()
    assert [r["label"] for r in rows] == _expected(clf, TEXTS)
    assert [int(r["row"]) for r in rows] == list(range(1, len(TEXTS) + 1))
    assert [r[keep[0]] for r in rows] == (TEXTS if keep == ["text"] else ids)
    assert not (tmp_path / (out + PROGRESS_SUFFIX)).exists()


def test_pairs_and_all_labels(clf, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"q": a, "a": b}) + "\n" for a, b in zip(TEXTS, reversed(TEXTS))))
    classify_file(clf, path, tmp_path / "out.jsonl", field="q", pair_column="a", top_k="all")
    rows = _read_jsonl(tmp_path / "out.jsonl")
    expected = clf([{"text": a, "text_pair": b} for a, b in zip(TEXTS, reversed(TEXTS))], top_k=None)
    assert [[d["label"] for d in r["labels"]] for r in rows] == [[d["label"] for d in e] for e in expected]
    assert [d["score"] for r in rows for d in r["labels"]] == pytest.approx([d["score"] for e in expected for d in e])


BAD_ROWS = [  # (file name, bytes, the error the first bad row gives)
    ("bad.txt", b"fine\n\nalso fine\n", "line 2: empty"),
    ("bad.txt", "fine\ncaf\xe9\n".encode("latin-1"), "line 2: not valid UTF-8 (byte 0xe9 at byte 4"),
    ("bad.jsonl", b'{"text": "fine"}\n{"text": 3}\n', "line 2: 'text' must be text"),
    ("bad.jsonl", b'{"text": "fine"}\n{"text": "x"\n', "line 2: not valid JSON"),
    ("bad.jsonl", b'{"text": "fine"}\n{"other": "x"}\n', "line 2: no value in 'text'"),
    ("bad.jsonl", b'{"text": "fine"}\n{"text": "a\\ud800b"}\n', "line 2: not valid Unicode: lone surrogate U+D800"),
    ("bad.csv", b"id,text\n1,fine\n2\n", "row 2: no value in 'text'"),
    ("bad.csv", b"id,text\n1,fine\n2,   \n", "row 2: empty text in 'text'"),
]


@pytest.mark.parametrize("name,data,error", BAD_ROWS)
def test_a_bad_row_is_named_or_written_as_an_error_never_dropped(clf, tmp_path, name, data, error):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match="--on-error skip") as raised:
        classify_file(clf, path, tmp_path / "out.jsonl")
    assert error in str(raised.value)
    assert [r["row"] for r in _read_jsonl(tmp_path / "out.jsonl")] == [1]  # what came before it was kept
    report = classify_file(clf, path, tmp_path / "skip.jsonl", on_error="skip")
    rows = _read_jsonl(tmp_path / "skip.jsonl")
    assert report.errors == 1 and len(rows) == report.rows == (3 if name == "bad.txt" and b"\n\n" in data else 2)
    assert error in rows[1]["error"] and "label" not in rows[1] and rows[0]["label"]


def test_a_missing_column_is_one_clear_error(clf, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,review\n1,good\n")
    with pytest.raises(InputError, match="no column 'text' in the header"):
        classify_file(clf, path, tmp_path / "out.jsonl")
    with pytest.raises(InputError, match="cannot read"):
        classify_file(clf, tmp_path / "nowhere.csv", tmp_path / "out.jsonl")


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "ortpipe.cli", "classify", *args]


def _killed_after(common: list[str], out, rows: int) -> int:
    """Run ``classify common --out out``, SIGKILL it once ``rows`` rows are recorded done; the rows it recorded."""
    sidecar = out.with_name(out.name + PROGRESS_SUFFIX)
    process = subprocess.Popen(_cli(*common, "--out", str(out)), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (sidecar.exists() and json.loads(sidecar.read_text() or "{}").get("rows", 0) >= rows):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return json.loads(sidecar.read_text())["rows"]


def test_resume_after_a_kill_gives_the_uninterrupted_file(bert_bundle, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"{TEXTS[i % len(TEXTS)]} number {i}\n" for i in range(30_000)))
    common = ["--bundle", str(bert_bundle), "--variant", "optimized", "--file", str(source), "--chunk-rows", "500",
              "--quiet", "--threads", "1"]
    subprocess.run(_cli(*common, "--out", str(tmp_path / "whole.jsonl")), check=True, capture_output=True)
    out, sidecar = tmp_path / "cut.jsonl", tmp_path / ("cut.jsonl" + PROGRESS_SUFFIX)
    done = _killed_after(common, out, 2000)
    assert 0 < done < 30_000
    with open(out, "ab") as handle:  # a half-written row, as a kill mid-write leaves
        handle.write(b'{"row": 99999, "te')
    resumed = subprocess.run(_cli(*common, "--out", str(out), "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"after {done} rows done before" in resumed.stderr
    assert out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert not sidecar.exists()


def test_windows_in_a_file_resume_after_a_kill_into_the_uninterrupted_file(bert_bundle, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": " ".join(TEXTS[(i + k) % len(TEXTS)] for k in range(i % 9))
                                          + f" number {i}"}) + "\n" for i in range(12_000)))
    common = ["--bundle", str(bert_bundle), "--variant", "optimized", "--file", str(source), "--chunk-rows", "300",
              "--quiet", "--threads", "1", "--window", "16", "--stride", "4", "--keep", "id"]
    whole = tmp_path / "whole.jsonl"
    subprocess.run(_cli(*common, "--out", str(whole)), check=True, capture_output=True)
    clf = TextClassifier.load(bert_bundle, variant="optimized")
    rows = _read_jsonl(whole)
    texts = [json.loads(line)["text"] for line in source.read_text().splitlines()]
    assert [r["label"] for r in rows[:300]] == [r["label"] for r in clf(texts[:300], window=16, stride=4)]
    out = tmp_path / "cut.jsonl"
    assert 0 < _killed_after(common, out, 1500) < 12_000
    resumed = subprocess.run(_cli(*common, "--out", str(out), "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == whole.read_bytes()


def test_return_windows_is_a_column_of_every_format(clf, tmp_path):
    long = " ".join(TEXTS * 6)
    (tmp_path / "in.txt").write_text(long + "\nshort\n")
    expected = clf([long, "short"], window=32, return_windows=True)
    for out in ("out.jsonl", "out.csv", "out.parquet"):
        classify_file(clf, tmp_path / "in.txt", tmp_path / out, window=32, return_windows=True)
    assert [r["windows"] for r in _read_jsonl(tmp_path / "out.jsonl")] == [e["windows"] for e in expected]
    with open(tmp_path / "out.csv", newline="") as handle:
        assert [json.loads(r["windows"]) for r in csv.DictReader(handle)] == [e["windows"] for e in expected]
    assert [json.loads(w) for w in pq.read_table(tmp_path / "out.parquet")["windows"].to_pylist()] == \
        [e["windows"] for e in expected]
    with pytest.raises(InputError, match="window must be an int"):
        classify_file(clf, tmp_path / "in.txt", tmp_path / "bad.jsonl", window=4)
    assert not (tmp_path / "bad.jsonl").exists()


# the peak from /proc (VmHWM, reset by exec), not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of
# the test process would report at least the test process's own size
PEAK_RSS = """
def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024
import sys
from ortpipe.runtime import TextClassifier
from ortpipe.runtime.stream import classify_file
clf = TextClassifier.load(sys.argv[1], variant="optimized", threads=1)
classify_file(clf, sys.argv[2], sys.argv[3])
print(peak_mb())
"""


def test_peak_memory_does_not_grow_with_the_file(bert_bundle, tmp_path):
    peaks = {}
    for lines in (2_000, 200_000):
        source = tmp_path / f"in-{lines}.txt"
        source.write_text("".join(f"{TEXTS[i % len(TEXTS)]} {i}\n" for i in range(lines)))
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(bert_bundle), str(source),
                               str(tmp_path / f"out-{lines}.jsonl")], capture_output=True, text=True, check=True)
        peaks[lines] = int(done.stdout.split()[-1])
        assert len((tmp_path / f"out-{lines}.jsonl").read_text().splitlines()) == lines
    assert peaks[200_000] - peaks[2_000] <= 50, peaks
