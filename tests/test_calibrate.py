"""``ortpipe calibrate`` (export/calibrate.py): each variant's temperature into the manifest, files untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ortpipe.cli import main
from ortpipe.export.calibrate import CalibrationSettings, calibrate_bundle
from ortpipe.export.data import DataError
from ortpipe.runtime import TextClassifier
from ortpipe.runtime.calibration import MIN_CALIBRATION_ROWS
from ortpipe.runtime.postprocess import softmax

WORDS = ["fine", "dull", "film", "plot", "quiet", "charm", "long", "bright", "cold", "warm", "story", "cast"]


def _texts(rows: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 9))) for _ in range(rows)]


def _write(path, texts, labels):
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in zip(texts, labels)))
    return path


def _labelled_by_the_model(bundle, path, rows=240):
    """Labels that follow the model's own argmax 80 % of the time: its scores are then too timid to be right."""
    clf = TextClassifier.load(bundle, variant="fp32", threads=1)
    texts = _texts(rows)
    predicted = [clf.labels.index(r["label"]) for r in clf(texts)]
    rng = np.random.default_rng(1)
    labels = [p if rng.random() < 0.8 else int(rng.integers(0, 3)) for p in predicted]
    return _write(path, texts, labels), texts


def test_each_variant_gets_its_own_temperature_and_the_files_stay_verified(bundle_copy, tmp_path):
    data, texts = _labelled_by_the_model(bundle_copy, tmp_path / "cal.tsv")
    manifest = calibrate_bundle(bundle_copy, CalibrationSettings(data))
    for name in ("fp32", "optimized", "int8"):
        record = manifest.variants[name].calibration
        assert record["held_out"]["rows"] == 120 and record["fit"]["rows"] == 120
        assert record["held_out"]["log_loss_after"] < record["held_out"]["log_loss_before"]
    assert manifest.variants["fp16"].calibration["fitted_on_variant"] == "optimized"
    assert "calibrated with ortpipe" in manifest.notes[-1]
    clf = TextClassifier.load(bundle_copy, variant="optimized", verify=True)  # hashes still hold
    temperature = manifest.variants["optimized"].calibration["temperature"]
    logits = clf.infer(clf.tokenize(texts[:5]))
    expected = softmax(logits / np.float32(temperature)).max(axis=1)
    assert [r["score"] for r in clf(texts[:5])] == pytest.approx(expected.tolist(), abs=1e-6)
    raw = softmax(logits).max(axis=1)
    assert [r["score"] for r in clf(texts[:5], calibrated=False)] == pytest.approx(raw.tolist(), abs=1e-6)
    assert [r["label"] for r in clf(texts[:5])] == [r["label"] for r in clf(texts[:5], calibrated=False)]


def test_the_command_line_records_a_threshold_or_says_why_not(bundle_copy, tmp_path, capsys):
    data, _ = _labelled_by_the_model(bundle_copy, tmp_path / "cal.tsv")
    assert main(["calibrate", str(bundle_copy), "--data", str(data), "--target-precision", "0.99",
                 "--held-out", "0.25"]) == 0
    printed = json.loads(capsys.readouterr().out)
    record = printed["int8"]
    assert record["fit"]["rows"] == 180 and record["held_out"]["rows"] == 60
    assert record["threshold"] is not None or "more calibration data" in record["threshold_refused"]
    clf = TextClassifier.load(bundle_copy, variant="fp32")
    if record["threshold"] is None:
        with pytest.raises(Exception, match="has none"):
            clf("fine film", threshold="auto")


def test_too_few_rows_or_an_unknown_label_is_named(bundle_copy, tmp_path):
    few = _write(tmp_path / "few.tsv", _texts(150), [0] * 150)
    with pytest.raises(DataError, match=f"75 rows to fit on.*at least {MIN_CALIBRATION_ROWS}"):
        calibrate_bundle(bundle_copy, CalibrationSettings(few))
    unknown = _write(tmp_path / "unknown.tsv", _texts(3), ["NEUTRALISH"] * 3)
    with pytest.raises(DataError, match="NEUTRALISH"):
        calibrate_bundle(bundle_copy, CalibrationSettings(unknown))
    with pytest.raises(Exception, match="target-precision"):
        calibrate_bundle(bundle_copy, CalibrationSettings(few, target_precision=1.5))


def test_multi_label_data_fits_a_temperature_per_label(bundles, tmp_path):
    import shutil

    bundle = tmp_path / "multi"
    shutil.copytree(bundles["bert-multilabel"], bundle)
    rng = np.random.default_rng(3)
    texts = _texts(200)
    labels = [",".join(str(j) for j in range(4) if rng.random() < 0.3) for _ in texts]
    manifest = calibrate_bundle(bundle, CalibrationSettings(_write(tmp_path / "m.tsv", texts, labels)))
    assert len(manifest.variants["fp32"].calibration["temperature"]) == 4
    clf = TextClassifier.load(bundle, variant="fp32")
    assert clf.calibration.temperature.shape == (4,)
