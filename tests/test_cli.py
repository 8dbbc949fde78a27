"""The ``ortpipe`` command line."""

from __future__ import annotations

import io
import json
import sys

import pytest

from ortpipe.cli import main


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_prints_json_lines(bert_bundle, capsys):
    code, out, _ = _run(capsys, "classify", "--bundle", str(bert_bundle), "good movie", "bad movie")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == ["good movie", "bad movie"]
    assert all(set(r) == {"text", "label", "score"} for r in rows)


def test_classify_top_k_and_stdin(bert_bundle, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("first line\n\nsecond line\n"))
    code, out, _ = _run(capsys, "classify", "--bundle", str(bert_bundle), "--top-k", "2")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 2 and all(len(r["labels"]) == 2 for r in rows)


def test_classify_from_file(bert_bundle, capsys, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("one\ntwo\nthree\n")
    code, out, _ = _run(capsys, "classify", "--bundle", str(bert_bundle), "--file", str(texts), "--all-labels")
    assert code == 0 and [len(json.loads(line)["labels"]) for line in out.splitlines()] == [3, 3, 3]


def test_explain_walks_the_four_stages(bert_bundle, capsys):
    code, out, _ = _run(capsys, "classify", "--bundle", str(bert_bundle), "--explain", "This course is amazing!")
    assert code == 0
    assert "[CLS] this course is amazing ! [SEP]" in out
    assert "[101, 2023, 2607, 2003, 6429, 999, 102]" in out
    for stage in ("1 tokenize", "2 infer", "3 postprocess", "4 predict"):
        assert stage in out


def test_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    code, _, err = _run(capsys, "classify", "--bundle", str(tmp_path / "missing"), "text")
    assert code == 2 and err.startswith("ortpipe: error: bundle folder") and "Traceback" not in err


def test_missing_file_is_reported(bert_bundle, capsys, tmp_path):
    code, _, err = _run(capsys, "classify", "--bundle", str(bert_bundle), "--file", str(tmp_path / "nope.txt"))
    assert code == 2 and "cannot read" in err and "nope.txt: no such file" in err


def test_file_that_is_not_utf8_is_reported(bert_bundle, capsys, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    code, _, err = _run(capsys, "classify", "--bundle", str(bert_bundle), "--file", str(bad))
    assert code == 2 and "line 2: not valid UTF-8 (byte 0xe9 at byte 4" in err and "Traceback" not in err


def test_doctor_is_listed_and_needs_no_extra(capsys):
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    assert "probe" in capsys.readouterr().out


def test_export_needs_out_with_a_model(capsys):
    code, _, err = _run(capsys, "export", "some/model")
    assert code == 2 and "--out DIR is required" in err


def test_export_writes_a_bundle(checkpoints, tmp_path, capsys):
    code, out, _ = _run(capsys, "export", str(checkpoints["distilbert"]), "--out", str(tmp_path / "b"),
                        "--quantize", "none", "--no-optimize", "--no-fp16")
    summary = json.loads(out)
    assert code == 0 and summary["default_variant"] == "fp32" and list(summary["variants"]) == ["fp32"]
    assert (tmp_path / "b" / "ortpipe.json").is_file()


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("classify", "export", "finetune", "bench"):
        assert command in out


LONG = " ".join(f"a fine film, and then a dull one, number {i}." for i in range(60))


def test_classify_window_reads_a_long_text_whole_and_says_when_texts_were_truncated(bert_bundle, capsys):
    from ortpipe.runtime import TextClassifier

    code, out, err = _run(capsys, "classify", "--bundle", str(bert_bundle), "--variant", "fp32", LONG, "short")
    assert code == 0
    assert "1 of 2 texts were longer than the model's 128 tokens and were truncated; --window auto" in err
    code, out, err = _run(capsys, "classify", "--bundle", str(bert_bundle), "--variant", "fp32", "--window", "32",
                          "--stride", "8", "--aggregate", "max", "--return-windows", LONG)
    (row,) = [json.loads(line) for line in out.splitlines()]
    (expected,) = TextClassifier.load(bert_bundle, variant="fp32")([LONG], window=32, stride=8, aggregate="max",
                                                                   return_windows=True)
    assert code == 0 and "truncated" not in err
    assert row == {"text": LONG, **expected} and len(row["windows"]) > 1


@pytest.mark.parametrize("flags, needle", [
    (["--window", "9999"], "window must be an int from 16 to the model's limit of 128 tokens"),
    (["--window", "32", "--stride", "40"], "stride must be an int from 0 to 29"),
    (["--stride", "4"], "stride needs window"),
    (["--window", "32", "--explain"], "--explain walks one model call per text"),
])
def test_bad_window_flags_are_one_line(bert_bundle, capsys, flags, needle):
    code, _, err = _run(capsys, "classify", "--bundle", str(bert_bundle), *flags, "text")
    assert code == 2 and needle in err and "Traceback" not in err


def test_window_flag_takes_auto_or_a_number(bert_bundle, capsys):
    with pytest.raises(SystemExit):
        main(["classify", "--bundle", str(bert_bundle), "--window", "big", "text"])
    assert "expected a number of tokens or 'auto', got 'big'" in capsys.readouterr().err


def test_keep_takes_one_value_per_flag_or_a_comma_list_and_leaves_the_texts_alone(capsys):
    """Issue 30, item 10: ``--keep id "hello"`` kept both as columns, then read stdin for the texts."""
    from ortpipe.cli import build_parser

    args = build_parser().parse_args(["classify", "--keep", "id", "hello"])
    assert (args.keep, args.texts) == (["id"], ["hello"])
    args = build_parser().parse_args(["classify", "--keep", "id,title", "--keep", "date", "a text"])
    assert (args.keep, args.texts) == (["id", "title", "date"], ["a text"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["classify", "--keep", "id,,x"])
    assert "expected column names separated by commas" in capsys.readouterr().err


def test_version(capsys):
    from ortpipe.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("ortpipe ")


def test_a_text_over_the_limit_names_both_ways_out(bert_bundle):
    """Issue 30, item 8: one wording everywhere, naming the window as well as truncation."""
    from ortpipe.runtime import InputError, TextClassifier
    from ortpipe.serve.protocol import HTTP_NAMES

    clf = TextClassifier.load(bert_bundle, variant="optimized")
    with pytest.raises(InputError) as caught:
        clf(["fine", "word " * 500], truncation=False)
    assert "input[1] has 502 tokens" in str(caught.value) and "window='auto' to classify it whole" in str(caught.value)
    over_http = caught.value.render(HTTP_NAMES)
    assert 'inputs[1]' in over_http and 'send "truncate": true' in over_http and '"window": "auto"' in over_http


def test_scoring_flags_reach_the_call(bert_bundle, capsys):
    assert main(["classify", "--bundle", str(bert_bundle), "--variant", "fp32", "a fine film", "--threshold", "1",
                 "--explain-words"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["label"] is None and [w["word"] for w in record["explanation"]] == ["a", "fine", "film"]
    assert main(["classify", "--bundle", str(bert_bundle), "--variant", "fp32", "a fine film", "--threshold",
                 "LABEL_A=0,LABEL_B=0,LABEL_C=0", "--raw-scores"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] is not None
    with pytest.raises(SystemExit):
        main(["classify", "--bundle", str(bert_bundle), "x", "--threshold", "high"])
    assert "LABEL=NUMBER" in capsys.readouterr().err
    assert main(["classify", "--bundle", str(bert_bundle), "x", "--threshold", "auto"]) == 2
    assert "has none" in capsys.readouterr().err
