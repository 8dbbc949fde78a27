"""Opening bundles: every broken part is named in an error of ortpipe's own type."""

from __future__ import annotations

import pytest

from bundle_edits import edit_manifest
from ortpipe.runtime import BundleError, IntegrityError, TextClassifier, open_bundle
from ortpipe.runtime.manifest import read_manifest


def test_opens_the_default_variant(bert_bundle):
    bundle = open_bundle(bert_bundle)
    assert bundle.variant.name == read_manifest(bert_bundle).default_variant
    assert bundle.model_path.is_file() and bundle.tokenizer_path.is_file()


def test_missing_tokenizer(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer tokenizer.json is missing"):
        TextClassifier.load(bundle_copy)


def test_corrupted_model_is_caught_by_its_hash(bundle_copy):
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.onnx is corrupted or was changed"):
        TextClassifier.load(bundle_copy, variant="fp32")


def test_garbage_model_without_verification_is_a_bundle_error(bundle_copy):
    (bundle_copy / "model.onnx").write_bytes(b"this is not an onnx file")
    with pytest.raises(BundleError, match="ONNX Runtime cannot load .*model.onnx"):
        TextClassifier.load(bundle_copy, variant="fp32", verify=False)


def test_manifest_naming_a_missing_variant_file(bundle_copy):
    (bundle_copy / "model.int8.onnx").unlink()
    with pytest.raises(BundleError, match="model variant 'int8': model.int8.onnx is missing"):
        TextClassifier.load(bundle_copy, variant="int8")
    TextClassifier.load(bundle_copy, variant="fp32")  # the others still load


def test_unknown_variant_lists_the_known_ones(bert_bundle):
    with pytest.raises(BundleError, match=r"no variant 'bf16'; it has \['fp16', 'fp32', 'int8', 'optimized'(, "
                                          r"'static-int8')?\]"):
        open_bundle(bert_bundle, "bf16")


def test_missing_manifest(bundle_copy):
    (bundle_copy / "ortpipe.json").unlink()
    with pytest.raises(BundleError, match="is not an ortpipe bundle"):
        open_bundle(bundle_copy)


def test_manifest_that_is_not_json(bundle_copy):
    (bundle_copy / "ortpipe.json").write_text("{")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("id2label"), "'id2label' is missing"),
    (lambda d: d.update(max_length="512"), "'max_length' should be int"),
    (lambda d: d.update(format_version=99), "format version 99 is not supported"),
    (lambda d: d.update(default_variant="bf16"), "default_variant 'bf16' is not among"),
    (lambda d: d.update(problem_type="ranking"), "problem_type 'ranking'"),
    (lambda d: d.update(id2label={"0": "A", "2": "C"}), "id2label must map 0..N-1"),
])
def test_malformed_manifest_names_the_field(bundle_copy, change, message):
    edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError, match=message):
        open_bundle(bundle_copy)


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        open_bundle(tmp_path / "nowhere")


def test_missing_default_bundle_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ORTPIPE_HOME", str(tmp_path))
    with pytest.raises(BundleError, match="run `ortpipe export` once"):
        TextClassifier.load()


def test_default_bundle_is_found_under_ortpipe_home(bert_bundle, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("ORTPIPE_HOME", str(tmp_path))
    shutil.copytree(bert_bundle, tmp_path / "bundles" / "sst2-minilm")
    assert TextClassifier.load().bundle.path == tmp_path / "bundles" / "sst2-minilm"


def test_manifest_round_trips(bert_bundle, tmp_path):
    manifest = read_manifest(bert_bundle)
    manifest.write(tmp_path)
    assert read_manifest(tmp_path) == manifest
