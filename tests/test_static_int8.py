"""NNCF's static int8 variant at export (export/static_int8.py)."""

import pytest

from ortpipe.export import static_int8
from ortpipe.export.bundle import BuildOptions, build_bundle
from ortpipe.export.onnx_export import ExportError
from ortpipe.runtime.manifest import read_manifest, sha256_of
from tiny_models import make_tiny_classifier


def test_the_manifest_records_how_static_int8_was_made_and_checked(static_bundle):
    variant = read_manifest(static_bundle).variants["static-int8"]
    assert variant.file == "model.static-int8.onnx" and sha256_of(static_bundle / variant.file) == variant.sha256
    assert variant.quantized and variant.details["method"] == "static" and variant.details["format"] == "QDQ"
    assert variant.details["calibrated_on"] == "ortpipe's built-in probe texts"
    assert variant.details["tool"].startswith("nncf ")
    validation = variant.validation
    assert validation["validated_with"] == "openvino" and validation["batch_sizes"] == [1, 32]
    assert validation["passed"] is (validation["label_agreement"] >= validation["min_label_agreement"])
    assert "probe_gate" in validation


def test_the_export_default_stays_an_onnx_runtime_variant(static_bundle):
    """load() without a backend runs ONNX Runtime: a variant timed on OpenVINO must not become its default."""
    assert read_manifest(static_bundle).default_variant != "static-int8"


@pytest.fixture
def failing_nncf(monkeypatch):
    pytest.importorskip("nncf")

    def fail(source, target, feeds):
        raise ExportError("NNCF's int8 quantization failed on model.onnx: AttributeError: no shape")
    monkeypatch.setattr(static_int8, "quantize_static_int8", fail)


def test_when_nncf_fails_unasked_the_bundle_is_built_without_it(failing_nncf, tmp_path):
    checkpoint = make_tiny_classifier("bert", tmp_path / "checkpoint")
    lines = []
    manifest = build_bundle(str(checkpoint), tmp_path / "bundle", BuildOptions(fp16=False), echo=lines.append)
    assert "static-int8" not in manifest.variants
    assert any("no static-int8 variant: NNCF's int8 quantization failed" in line for line in lines)


def test_when_nncf_fails_asked_for_the_export_fails(failing_nncf, tmp_path):
    checkpoint = make_tiny_classifier("bert", tmp_path / "checkpoint")
    with pytest.raises(ExportError, match="NNCF's int8 quantization failed"):
        build_bundle(str(checkpoint), tmp_path / "bundle", BuildOptions(static_int8=True, fp16=False),
                     echo=lambda line: None)


def test_asking_for_static_int8_without_nncf_is_refused_before_the_export(monkeypatch, tmp_path):
    import ortpipe.export.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "nncf_installed", lambda: False)
    with pytest.raises(ExportError, match=r"--static-int8 needs NNCF: pip install 'ortpipe\[openvino\]'"):
        build_bundle("no-such-model", tmp_path / "bundle", BuildOptions(static_int8=True))


def test_the_export_command_prints_clean_json_with_static_int8(tmp_path, capsys):
    """NNCF's progress bars must not reach stdout, where the summary is one JSON object."""
    import json

    from ortpipe.cli import main

    pytest.importorskip("nncf")
    checkpoint = make_tiny_classifier("distilbert", tmp_path / "checkpoint")
    code = main(["export", str(checkpoint), "--out", str(tmp_path / "b"), "--no-optimize", "--no-fp16",
                 "--static-int8"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["variants"]["static-int8"]["file"] == "model.static-int8.onnx"
