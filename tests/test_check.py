"""Load-time probe check: a quantized default is kept only if it passes here; the verdict is cached."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from bundle_edits import edit_manifest, edit_probes, make_int8_the_default, negate_int8_outputs, negate_reference_logits
from ortpipe.runtime import BundleError, IntegrityError, TextClassifier, open_bundle, read_manifest
from ortpipe.runtime.check import best_float_variant, cache_file, choose_cuda_variant, choose_variant, wants_fp16
from ortpipe.runtime.machine import machine_key
from ortpipe.runtime.probes import ProbeReport
from ortpipe.runtime.providers import cuda_available


@pytest.fixture
def int8_default(bundle_copy):
    make_int8_the_default(bundle_copy)
    return bundle_copy


def test_a_quantized_default_that_passes_here_is_kept_and_cached(int8_default, caplog):
    with caplog.at_level(logging.WARNING, logger="ortpipe"):
        clf = TextClassifier.load(int8_default)
    assert clf.variant == "int8" and clf.rejected is None and caplog.records == []
    cached = json.loads(cache_file(clf.bundle, machine_key()).read_text())
    assert cached["int8"]["passed"] is True and cached["int8"]["machine_key"] == machine_key()
    assert clf.check().cached and not clf.check(refresh=True).cached


def test_an_int8_that_fails_here_falls_back_to_float_with_one_warning(int8_default, caplog):
    edit_probes(int8_default, negate_int8_outputs)
    with caplog.at_level(logging.WARNING, logger="ortpipe"):
        clf = TextClassifier.load(int8_default)
    expected = best_float_variant(read_manifest(int8_default))
    assert clf.variant == expected != "int8"
    assert clf.rejected is not None and not clf.rejected.passed and "other numbers" in clf.rejected.reason
    (record,) = caplog.records
    assert "'int8' failed its probe check" in record.message and f"Using {expected!r}" in record.message
    assert clf("good movie")[0]["label"] in clf.labels


def test_when_every_variant_disagrees_with_its_probes_load_refuses(int8_default):
    """Issue 27, case 10: the float fallback is checked too, and a failing one is never served silently."""
    edit_probes(int8_default, negate_reference_logits)
    with pytest.raises(BundleError, match=r"failed its probe check here \(label agreement"):
        TextClassifier.load(int8_default)


def test_an_explicit_int8_loads_anyway_and_check_says_why(int8_default):
    edit_probes(int8_default, negate_reference_logits)
    clf = TextClassifier.load(int8_default, variant="int8")
    report = clf.check()
    assert clf.variant == "int8" and not report.passed and report.agreement < 0.98


def test_the_cached_verdict_is_what_load_uses(int8_default):
    """A failing verdict planted in the cache makes load() fall back without running the probes."""
    bundle = open_bundle(int8_default)
    planted = ProbeReport("int8", False, "planted by the test", machine_key=machine_key())
    path = cache_file(bundle, machine_key())
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"int8": planted.as_dict()}))
    clf = TextClassifier.load(int8_default)
    assert clf.variant != "int8" and clf.rejected.reason == "planted by the test" and clf.rejected.cached


def test_the_cache_is_per_bundle_and_per_machine(int8_default, bert_bundle):
    one, other = open_bundle(int8_default), open_bundle(bert_bundle)
    assert cache_file(one, "a") != cache_file(other, "a")  # the manifests differ (default variant)
    assert cache_file(one, "a") != cache_file(one, "b")


def test_a_tampered_probe_file_without_its_hash_is_refused(int8_default):
    path = int8_default / "probes.json"
    data = json.loads(path.read_text())
    negate_reference_logits(data)
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="probe file"):
        TextClassifier.load(int8_default)


def test_a_bundle_without_probes_falls_back_to_float(int8_default, caplog):
    def as_version_1(manifest: dict) -> None:
        manifest.update(format_version=1, probes_file="", probes_sha256="")

    edit_manifest(int8_default, as_version_1)
    with caplog.at_level(logging.WARNING, logger="ortpipe"):
        clf = TextClassifier.load(int8_default)
    assert clf.variant != "int8" and "no probe texts" in clf.rejected.reason


def test_a_float_default_is_probed_at_load_and_refused_when_it_fails(bundle_copy):
    """Issue 27, case 10 (before: a float default was never probed, so a replaced model file was served)."""
    edit_manifest(bundle_copy, lambda m: m.update(default_variant="fp32"))
    clf = TextClassifier.load(bundle_copy)
    assert clf.variant == "fp32" and clf.rejected is None
    assert json.loads(cache_file(clf.bundle, machine_key()).read_text())["fp32"]["passed"] is True
    edit_probes(bundle_copy, negate_reference_logits)
    with pytest.raises(BundleError, match="variant 'fp32' failed its probe check here"):
        TextClassifier.load(bundle_copy)
    assert TextClassifier.load(bundle_copy, variant="fp32").variant == "fp32"  # asked for by name: loaded


def test_best_float_variant_is_the_fastest_that_passed(bert_bundle):
    manifest = read_manifest(bert_bundle)
    floats = {n: v for n, v in manifest.variants.items() if not v.quantized and n != "fp16"}
    fastest = min(floats, key=lambda n: floats[n].details["timing_cpu"]["single_sentence_ms"])
    assert best_float_variant(manifest) == fastest


def test_choose_variant_explains_itself(bert_bundle):
    manifest = dataclasses.replace(read_manifest(bert_bundle), default_variant="int8")
    assert choose_variant(manifest, None)[0] == manifest.default_variant
    failed = ProbeReport("int8", False, "some reason")
    chosen, why = choose_variant(manifest, failed)
    assert chosen == best_float_variant(manifest) and "some reason" in why
    float_default = dataclasses.replace(manifest, default_variant="fp32")
    chosen, why = choose_variant(float_default, ProbeReport("fp32", False, "other reason"))
    assert chosen is None and "other reason" in why


def test_fp16_is_validated_by_its_first_run_here(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="fp16", provider="cpu")  # ONNX Runtime's CPU runs it too
    report = clf.check()
    assert report.passed and "first validated here" in report.reason and report.drift is None
    assert report.max_abs_diff <= 0.05


@pytest.mark.skipif(cuda_available(), reason="this ONNX Runtime has CUDA")
def test_without_cuda_load_never_picks_fp16(bert_bundle):
    manifest = read_manifest(bert_bundle)
    assert not wants_fp16(manifest, "auto")
    assert TextClassifier.load(bert_bundle).variant == manifest.default_variant != "fp16"


def test_on_cuda_fp16_is_chosen_once_it_passes_else_the_best_float(bert_bundle):
    manifest = read_manifest(bert_bundle)
    assert choose_cuda_variant(manifest, ProbeReport("fp16", True, "fine"))[0] == "fp16"
    chosen, why = choose_cuda_variant(manifest, ProbeReport("fp16", False, "labels flipped"))
    assert chosen == best_float_variant(manifest) and "labels flipped" in why
