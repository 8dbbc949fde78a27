"""The default sentiment model: committed adapter, its hash, and the rebuilt bundle's accuracy."""

from __future__ import annotations

import json
import shutil

import pytest

from ortpipe.export.default_model import ADAPTER_DIR, WEIGHTS_FILE, training_card, verify_adapter
from ortpipe.runtime import BundleError, IntegrityError, TextClassifier


def test_committed_adapter_is_small_and_matches_its_hash():
    assert (ADAPTER_DIR / WEIGHTS_FILE).stat().st_size <= 5 * 1024 * 1024
    assert verify_adapter() == training_card()["weights_sha256"]


def test_training_card_reports_the_recipe():
    card = training_card()
    assert card["labels"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    for key in ("hyperparameters", "steps", "training_seconds", "validation_accuracy", "test_accuracy", "history"):
        assert key in card


def test_tampered_adapter_is_refused(tmp_path):
    adapter = tmp_path / "adapter"
    shutil.copytree(ADAPTER_DIR, adapter)
    weights = adapter / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="changed or corrupted"):
        verify_adapter(adapter)
    (adapter / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match="is missing"):
        verify_adapter(adapter)


@pytest.mark.slow
def test_rebuilt_default_bundle_fp32_matches_the_training_card(default_bundle):
    """fp32 is machine-independent (within 0.2 points), so it is held to the card recorded elsewhere."""
    manifest, _ = default_bundle
    card = training_card()
    fp32 = manifest.variants["fp32"].validation["accuracy"]
    assert fp32 == pytest.approx(card["test_accuracy"], abs=0.002)
    assert fp32 == pytest.approx(card["bundle_test_accuracy"]["fp32"], abs=0.002)
    assert manifest.variants["optimized"].validation["accuracy"] == pytest.approx(fp32, abs=0.002)


@pytest.mark.slow
def test_rebuilt_int8_passes_its_gate_against_fp32_computed_here(default_bundle):
    """int8 numbers depend on the CPU, so int8 is judged only against fp32 run on this machine."""
    manifest, _ = default_bundle
    fp32 = manifest.variants["fp32"].validation
    int8 = manifest.variants["int8"].validation
    assert int8["passed"], f"int8 failed its gate here: {int8}"
    assert fp32["accuracy"] - int8["accuracy"] <= 0.007, f"int8 loses {fp32['accuracy'] - int8['accuracy']:.4f}"
    for batch_size in ("1", "32"):
        assert int8["by_batch_size"][batch_size]["label_agreement"] >= 0.98, batch_size


@pytest.mark.slow
def test_load_picks_a_variant_that_passed_here(default_bundle):
    _, path = default_bundle
    clf = TextClassifier.load(path)
    report = clf.check()
    assert report.passed, report.reason
    assert clf.rejected is None or clf.variant != clf.rejected.variant


@pytest.mark.slow
def test_doctor_on_the_default_bundle(default_bundle, capsys):
    from ortpipe.cli import main

    _, path = default_bundle
    assert main(["doctor", "--bundle", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["variants"]) - {"static-int8"} == {"fp32", "optimized", "int8", "fp16"}
    assert report["variants"][report["chosen"]]["passed"] is True


@pytest.mark.slow
def test_default_bundle_gives_the_seed_walkthrough(default_bundle):
    _, path = default_bundle
    for variant in ("fp32", "int8"):
        clf = TextClassifier.load(path, variant=variant)
        assert clf.tokenize("This course is amazing!").input_ids.tolist() == [[101, 2023, 2607, 2003, 6429, 999, 102]]
        (result,) = clf("This course is amazing!", calibrated=False)  # the raw softmax, as in the course
        assert result["label"] == "POSITIVE" and result["score"] >= 0.99, (variant, result)
        assert clf("I hate this so much!")[0]["label"] == "NEGATIVE"


@pytest.mark.slow
def test_the_default_bundle_is_calibrated_on_sst2_with_a_threshold_for_precision_095(default_bundle):
    """Fitted on the first half of SST-2's test sentences, measured on the second: labels unchanged, log-loss
    lower, and a threshold recorded for threshold='auto' (its held-out figures are in docs/scores.md)."""
    manifest, path = default_bundle
    for name in ("fp32", "optimized", "int8"):
        record = manifest.variants[name].calibration
        held = record["held_out"]
        assert record["data"] == "test.tsv" and held["rows"] == 436 and record["fit"]["rows"] == 436
        assert held["log_loss_after"] < held["log_loss_before"] and held["ece_after"] < held["ece_before"]
    threshold = manifest.variants["fp32"].calibration["threshold"]  # fp32 computes alike on every CPU
    assert threshold["target_precision"] == 0.95 and threshold["calibration_precision"] >= 0.95
    clf = TextClassifier.load(path, variant="fp32")
    assert clf("This course is amazing!", threshold="auto")[0]["label"] == "POSITIVE"
    assert clf("This course is amazing!")[0]["score"] < clf("This course is amazing!", calibrated=False)[0]["score"]
