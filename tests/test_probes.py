"""Probe files and the probe gate: agreement, |Δlogit| and drift from export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ortpipe.runtime import BundleError, TextClassifier
from ortpipe.runtime.probes import PROBES_FILE, ProbeGate, ProbeSet, run_probes

GENEROUS = ProbeGate(min_agreement=0.98, max_abs_diff=1.0, max_drift=0.05)


@pytest.fixture
def int8(bundle_copy):
    clf = TextClassifier.load(bundle_copy, variant="int8")
    return clf, ProbeSet.read(bundle_copy / PROBES_FILE)


def test_probe_file_round_trips(bert_bundle, tmp_path):
    probes = ProbeSet.read(bert_bundle / PROBES_FILE)
    assert len(probes.texts) == probes.logits.shape[0] == probes.batch_size == 16  # one batch of 16
    assert set(probes.outputs) - {"static-int8"} == {"fp32", "optimized", "int8"}  # static-int8 with NNCF
    probes.write(tmp_path / "p.json")
    again = ProbeSet.read(tmp_path / "p.json")
    assert again.texts == probes.texts and np.array_equal(again.logits, probes.logits)
    assert np.array_equal(again.outputs["int8"]["1"], probes.outputs["int8"]["1"])


@pytest.mark.parametrize("content", ["{", json.dumps({"texts": ["a"], "logits": [], "batch_size": 1}),
                                     json.dumps({"texts": ["a"], "logits": [[1.0, 2.0]]})])
def test_malformed_probe_file_is_a_bundle_error(tmp_path, content):
    (tmp_path / PROBES_FILE).write_text(content)
    with pytest.raises(BundleError, match="probe file"):
        ProbeSet.read(tmp_path / PROBES_FILE)


def test_a_variant_passes_on_its_own_probes(int8):
    clf, probes = int8
    report = run_probes("int8", clf.model, clf.tokenizer, probes, GENEROUS)
    assert report.passed, report.reason
    assert report.agreement == 1.0 and set(report.by_batch_size) == {"1", "16"}
    assert report.drift <= 1e-3  # the same file on the same machine computes the same numbers


def test_disagreeing_with_the_reference_fails(int8):
    clf, probes = int8
    flipped = ProbeSet(probes.texts, -probes.logits, probes.batch_size, probes.outputs)
    report = run_probes("int8", clf.model, clf.tokenizer, flipped, GENEROUS)
    assert not report.passed and "label agreement" in report.reason and report.agreement < 0.98


def test_a_larger_difference_than_allowed_fails(int8):
    clf, probes = int8
    report = run_probes("int8", clf.model, clf.tokenizer, probes, ProbeGate(0.98, 1e-9, 0.05))
    assert not report.passed and "max |Δlogit|" in report.reason


def test_drift_from_the_export_logits_fails(int8):
    clf, probes = int8
    moved = {size: logits + 0.5 for size, logits in probes.outputs["int8"].items()}
    report = run_probes("int8", clf.model, clf.tokenizer,
                        ProbeSet(probes.texts, probes.logits, probes.batch_size, {"int8": moved}), GENEROUS)
    assert not report.passed and "other numbers here" in report.reason
    assert report.drift == pytest.approx(0.5, abs=0.01)


def test_no_gate_never_passes(int8):
    clf, probes = int8
    report = run_probes("int8", clf.model, clf.tokenizer, probes, None)
    assert not report.passed and "no probe gate" in report.reason
