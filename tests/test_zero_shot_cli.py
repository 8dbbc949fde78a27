"""Zero-shot from the command line, in files and on Ray Data: the in-process answers everywhere."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from ortpipe.cli import main
from ortpipe.runtime import ZeroShotClassifier
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.stream import classify_file
from ortpipe.runtime.zero_shot import ZeroShotOptions

TEXTS = ["I love this movie, the actors are wonderful.", "The election results were announced today.",
         "Stocks fell sharply after the central bank raised interest rates again."]
LABELS = "cinema,politics,economy"


@pytest.fixture(scope="module")
def nli(nli_models):
    return nli_models["bert"][1]


@pytest.fixture(scope="module")
def expected(nli):
    return ZeroShotClassifier.load(nli, variant="optimized")(TEXTS, LABELS, multi_label=True)


def _answers(rows) -> list[tuple[list, list]]:
    return [(row["labels"], row["scores"]) for row in rows]


def test_the_cli_prints_each_texts_labels_and_scores(nli, expected, capsys):
    assert main(["classify", "--bundle", str(nli), "--variant", "optimized", "--candidate-labels", LABELS,
                 "--multi-label", *TEXTS]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in rows] == TEXTS
    assert _answers(rows) == _answers(expected)


def test_a_file_gets_labels_and_scores_columns(nli, expected, tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["id", "text"], *enumerate(TEXTS)])
    assert main(["classify", "--bundle", str(nli), "--variant", "optimized", "--candidate-labels", LABELS,
                 "--multi-label", "--file", str(source), "--keep", "id", "--out", str(tmp_path / "out.csv")]) == 0
    with open(tmp_path / "out.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["row", "id", "labels", "scores", "error"]
    assert [(json.loads(r["labels"]), json.loads(r["scores"])) for r in rows] == _answers(expected)


def test_zero_shot_options_that_mean_nothing_are_refused(nli, tmp_path, capsys):
    for extra in (["--top-k", "1"], ["--threshold", "0.5"], ["--explain-words"]):
        assert main(["classify", "--bundle", str(nli), "--candidate-labels", LABELS, *extra, "x"]) == 2
        assert "not with --candidate-labels" in capsys.readouterr().err
    assert main(["classify", "--bundle", str(nli), "--multi-label", "x"]) == 2
    assert main(["classify", "--bundle", str(nli), "--candidate-labels", "a,a", "x"]) == 2
    assert "repeated: ['a']" in capsys.readouterr().err
    source = tmp_path / "pairs.csv"
    source.write_text("text,other\na,b\n", encoding="utf-8")
    zs = ZeroShotClassifier.load(nli)
    with pytest.raises(InputError, match="give no pair column"):
        classify_file(zs.classifier, source, tmp_path / "o.jsonl", pair_column="other",
                      zero_shot=ZeroShotOptions.parse(["a", "b"]))


@pytest.mark.ray
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")
def test_ray_data_gives_the_in_process_answers(nli, expected, tmp_path):
    import pyarrow.parquet as pq
    import ray

    from ortpipe.distributed.data import classify_with_ray

    source = tmp_path / "in.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["id", "text"], *enumerate(TEXTS)])
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        classify_with_ray(source, tmp_path / "out", bundle=nli, variant="optimized", keep=["id"], actors=1,
                          threads=1, quiet=True, zero_shot=ZeroShotOptions.parse(LABELS, multi_label=True))
    finally:
        ray.shutdown()
    rows = sorted(pq.read_table(tmp_path / "out").to_pylist(), key=lambda row: int(row["id"]))
    assert [(json.loads(r["labels"]), json.loads(r["scores"])) for r in rows] == _answers(expected)
