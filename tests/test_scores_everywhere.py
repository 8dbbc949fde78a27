"""The same scoring options give the same answers in every entry point: in-process, a file, the server, Ray Data."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from bundle_edits import edit_manifest
from ortpipe.runtime import TextClassifier
from ortpipe.runtime.stream import classify_file
from ortpipe.runtime.call import Scoring

TEXTS = ["a fine film , full of quiet charm", "dull", "the plot is thin and the cast is cold"]
TEMPERATURE = 0.5


@pytest.fixture(scope="module")
def calibrated(bert_bundle, tmp_path_factory):
    """The tiny BERT with a recorded temperature and threshold (hand-written: what is checked is the wiring)."""
    bundle = tmp_path_factory.mktemp("calibrated") / "bundle"
    shutil.copytree(bert_bundle, bundle)
    record = {"method": "temperature", "temperature": TEMPERATURE}
    edit_manifest(bundle, lambda m: [v.update(calibration=record) for v in m["variants"].values()])
    scores = sorted(r["score"] for r in TextClassifier.load(bundle, variant="optimized")(TEXTS))
    record["threshold"] = {"value": (scores[0] + scores[1]) / 2, "target_precision": 0.95}  # one text unanswered
    edit_manifest(bundle, lambda m: [v.update(calibration=record) for v in m["variants"].values()])
    return bundle


@pytest.fixture(scope="module")
def expected(calibrated):
    clf = TextClassifier.load(calibrated, variant="optimized", threads=1)
    assert clf.calibration is not None and clf.calibration.threshold is not None
    return clf(TEXTS, threshold="auto", explain=True)


def _same(got: list, want: list) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert None in [w["label"] for w in want] and any(w["label"] for w in want)  # the threshold said "I don't know"
    for g, w in zip(got, want):
        assert g["score"] == pytest.approx(w["score"], abs=1e-5)
        assert [e["word"] for e in g["explanation"]] == [e["word"] for e in w["explanation"]]
        assert [e["weight"] for e in g["explanation"]] == pytest.approx([e["weight"] for e in w["explanation"]],
                                                                         abs=1e-5)


def test_a_file_gives_the_in_process_answers(calibrated, expected, tmp_path):
    clf = TextClassifier.load(calibrated, variant="optimized", threads=1)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    classify_file(clf, source, tmp_path / "out.jsonl", scoring=Scoring(threshold="auto", explain=True))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    _same(rows, expected)


RAY = pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                                                     reason="the ray extra is not installed")])


@pytest.mark.server
@pytest.mark.parametrize("engine", ["local", RAY])
def test_the_server_gives_the_in_process_answers(calibrated, expected, tmp_path, engine):
    """The server, and Ray Serve behind it (``--engine ray``)."""
    httpx = pytest.importorskip("httpx")
    from servers import serving

    with serving(tmp_path / "home", "--bundle", str(calibrated), "--variant", "optimized", "--max-client-batch",
                 "24", "--engine", engine, env={"RAY_ADDRESS": ""}, threads=2 if engine == "local" else 1,
                 ready_timeout=60 if engine == "local" else 150) as (url, _, _):
        answer = httpx.post(f"{url}/predict", json={"inputs": [[t] for t in TEXTS], "top_k": 1,
                                                    "parameters": {"threshold": "auto", "explain": True}}, timeout=30)
        assert answer.status_code == 200, answer.text
        _same([labels[0] for labels in answer.json()], expected)
        info = httpx.get(f"{url}/info", timeout=10).json()
        assert info["calibration"]["temperature"] == TEMPERATURE and info["calibration"]["threshold"] is not None
        raw = httpx.post(f"{url}/predict", json={"inputs": TEXTS[0], "calibrated": False}, timeout=30).json()
        assert raw[0]["score"] != pytest.approx(expected[0]["score"], abs=1e-3)
        bad = httpx.post(f"{url}/predict", json={"inputs": "x", "threshold": 2}, timeout=30)
        assert bad.status_code == 422 and "threshold must be a number in [0, 1]" in bad.json()["error"]
        long = " ".join(["fine"] * 30)
        over = httpx.post(f"{url}/predict", json={"inputs": long, "explain": True}, timeout=30)
        assert over.status_code == 413 and "--max-client-batch" in over.json()["error"], over.text


@pytest.mark.ray
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")
def test_ray_data_gives_the_in_process_answers(calibrated, expected, tmp_path):
    import pyarrow.parquet as pq
    import ray

    from ortpipe.distributed.data import classify_with_ray

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        classify_with_ray(source, tmp_path / "out", bundle=calibrated, variant="optimized", keep=["id"], actors=1,
                          quiet=True, scoring=Scoring(threshold="auto", explain=True))
    finally:
        ray.shutdown()
    rows = sorted(pq.read_table(tmp_path / "out").to_pylist(), key=lambda r: int(r["id"]))
    _same([{**r, "explanation": json.loads(r["explanation"])} for r in rows], expected)
