"""Export: parity with PyTorch per architecture, the manifest, and fatal validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ortpipe.export.bundle import BuildOptions, build_bundle
from ortpipe.export.onnx_export import ExportError, export_onnx
from ortpipe.export.validate import PROBE_TEXTS, compare_with_torch
from ortpipe.runtime import TextClassifier
from ortpipe.runtime.bundle import open_bundle
from ortpipe.runtime.manifest import read_manifest, sha256_of
from tiny_models import ARCHITECTURES

UNSEEN_BATCH_SIZES = (2, 5, 16)  # export validated at 1, 3 and 8


def _torch_model(checkpoint):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("variant", ["fp32", "optimized"])
def test_float_variants_match_pytorch_on_unseen_batch_sizes(arch, variant, checkpoints, bundles):
    clf = TextClassifier.load(bundles[arch], variant=variant, provider="cpu")
    result = compare_with_torch(clf.model, _torch_model(checkpoints[arch]), clf.tokenizer,
                                PROBE_TEXTS, UNSEEN_BATCH_SIZES)
    assert result.max_abs_diff <= 1e-4, f"{arch}/{variant}: max |Δlogit| {result.max_abs_diff}"
    assert result.label_agreement == 1.0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_int8_variant_keeps_labels_close_to_pytorch(arch, checkpoints, bundles):
    clf = TextClassifier.load(bundles[arch], variant="int8", provider="cpu")
    result = compare_with_torch(clf.model, _torch_model(checkpoints[arch]), clf.tokenizer, PROBE_TEXTS, (1,))
    assert result.max_abs_diff < 0.1
    assert result.label_agreement >= 0.9


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_manifest_records_what_was_measured(arch, bundles):
    manifest = read_manifest(bundles[arch])
    # static-int8 where NNCF is installed and quantizes this architecture (tests/test_static_int8.py)
    assert set(manifest.variants) - {"static-int8"} == {"fp32", "optimized", "int8", "fp16"}
    assert manifest.default_variant in ("fp32", "optimized", "int8", "static-int8")  # a CPU variant
    assert manifest.variants[manifest.default_variant].validation["passed"] is True
    for variant in manifest.variants.values():
        assert sha256_of(bundles[arch] / variant.file) == variant.sha256
        if variant.name != "fp16":
            assert "max_abs_diff" in variant.validation and "label_agreement" in variant.validation
    fp32 = manifest.variants["fp32"].validation
    assert fp32["against"] == "pytorch" and fp32["max_abs_diff"] <= 1e-4 and fp32["batch_sizes"] == [1, 3, 8]
    assert manifest.variants["optimized"].details["fused_ops"].get("Attention", 0) >= 1
    assert manifest.problem_type == "single_label_classification"
    assert manifest.labels == ["LABEL_A", "LABEL_B", "LABEL_C"]
    assert manifest.max_length == 128
    assert manifest.opset >= 14
    assert {"torch", "transformers", "onnxruntime", "tokenizers"} <= set(manifest.library_versions)
    expected_inputs = {"input_ids", "attention_mask"} | (
        set() if arch in ("distilbert", "roberta") else {"token_type_ids"})
    assert set(manifest.input_names) == expected_inputs


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_manifest_records_the_machine_probes_and_shape(arch, bundles):
    from ortpipe.runtime.machine import describe_machine

    manifest = read_manifest(bundles[arch])
    here = describe_machine()
    for variant in manifest.variants.values():
        assert variant.machine["isa"] == here["isa"] and variant.machine["cpu"] == here["cpu"]
        for key in ("arch", "cores", "onnxruntime", "int8_u8s8_saturates"):
            assert key in variant.machine
        gate = variant.validation["probe_gate"]
        if variant.name == "fp16":  # never ran here: nothing measured, nothing to drift from
            assert "probe" not in variant.validation and gate["max_drift"] is None
            continue
        probe = variant.validation["probe"]
        assert gate["min_agreement"] == min(0.98, probe["agreement"])  # a variant can pass where it was made
        assert gate["max_abs_diff"] >= probe["max_abs_diff"] and gate["max_drift"] > 0
        assert probe["texts"] == 16
    assert manifest.format_version == 2
    assert manifest.probes_file == "probes.json"
    assert sha256_of(bundles[arch] / "probes.json") == manifest.probes_sha256
    assert manifest.architecture == {"layers": 2, "hidden_size": 32, "heads": 4, "intermediate_size": 64,
                                     "num_labels": 3}
    int8 = manifest.variants["int8"].validation
    assert set(int8["by_batch_size"]) == {"1", "32"}
    assert int8["label_agreement"] == min(b["label_agreement"] for b in int8["by_batch_size"].values())


def test_fp16_is_float16_inside_float32_outside_and_not_yet_validated(bert_bundle):
    import onnx

    manifest = read_manifest(bert_bundle)
    fp16 = manifest.variants["fp16"]
    assert fp16.validation["validated"] is False and fp16.validation["passed"] is False
    assert "no CUDA" in fp16.validation["reason"] and fp16.details["requires"] == "cuda"
    assert fp16.validation["probe_gate"] == {"min_agreement": 0.98, "max_abs_diff": 0.05, "max_drift": None}
    graph = onnx.load(str(bert_bundle / fp16.file)).graph
    weights = [w for w in graph.initializer if len(w.dims) == 2]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert (bert_bundle / fp16.file).stat().st_size < 0.7 * (bert_bundle / "model.optimized.onnx").stat().st_size


def test_graph_has_dynamic_batch_and_sequence_axes(bert_bundle):
    import onnx

    graph = onnx.load(str(bert_bundle / "model.onnx"), load_external_data=False).graph
    for node in graph.input:
        dims = [d.dim_param for d in node.type.tensor_type.shape.dim]
        assert dims == ["batch_size", "sequence_length"], (node.name, dims)


def test_multilabel_problem_type_is_recorded(bundles):
    assert read_manifest(bundles["bert-multilabel"]).problem_type == "multi_label_classification"


def test_fp32_mismatch_beyond_tolerance_is_fatal_and_gives_numbers(checkpoints, tmp_path):
    with pytest.raises(ExportError, match=r"max \|Δlogit\| .* \(tolerance 1e-12\)"):
        build_bundle(str(checkpoints["bert"]), tmp_path / "b", BuildOptions(atol=1e-12, quantize=None,
                                                                            optimize=False),
                     echo=lambda line: None)
    assert not (tmp_path / "b").exists()


def test_int8_gate_failure_keeps_variant_but_not_as_default(checkpoints, tmp_path):
    manifest = build_bundle(str(checkpoints["bert"]), tmp_path / "b",
                            BuildOptions(min_int8_agreement=1.01), echo=lambda line: None)
    assert manifest.variants["int8"].validation["passed"] is False
    assert manifest.default_variant != "int8"
    open_bundle(tmp_path / "b", "int8")  # still usable when asked for by name


def test_eval_data_records_accuracy(checkpoints, tmp_path):
    data = tmp_path / "eval.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 3}\n" for i, t in enumerate(PROBE_TEXTS)))
    manifest = build_bundle(str(checkpoints["bert"]), tmp_path / "b", BuildOptions(eval_data=data),
                            echo=lambda line: None)
    for variant in manifest.variants.values():
        if variant.name == "fp16":  # measured only where it can run, on CUDA
            assert "accuracy" not in variant.validation
            continue
        assert 0.0 <= variant.validation["accuracy"] <= 1.0
    assert "accuracy_drop" in manifest.variants["int8"].validation
    probes = json.loads((tmp_path / "b" / "probes.json").read_text())["texts"]
    spread = [t for t in PROBE_TEXTS[::3] if t != PROBE_TEXTS[12]]  # every third eval text, but not the long one
    assert len(probes) == 16 and probes[:len(spread)] == spread and PROBE_TEXTS[12] not in probes
    on_disk = json.loads((tmp_path / "b" / "ortpipe.json").read_text())
    assert on_disk["variants"]["fp32"]["validation"]["accuracy"] == manifest.variants["fp32"].validation["accuracy"]


def test_unreachable_hub_id_is_a_plain_error(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: set it too
    try:
        with pytest.raises(ExportError, match="could not be reached"):
            export_onnx("distilbert/distilbert-base-uncased-finetuned-sst-2-english", tmp_path)
    finally:
        reset_sessions()  # the hub's cached HTTP session was made offline: later clients get a fresh one


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ExportError, match="no config.json"):
        export_onnx(str(tmp_path), tmp_path / "out")


def test_logits_are_float32(bert_bundle):
    clf = TextClassifier.load(bert_bundle, variant="fp32")
    assert clf.infer(clf.tokenize(["a", "b c"])).dtype == np.float32


def test_an_unreachable_hub_fails_at_once_without_retries(tmp_path, monkeypatch):
    """Issue 30, item 9: the hub client retried for 30 s before the same answer; the one connect attempt
    that refuses first is what this message names."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    with pytest.raises(ExportError, match=r"could not be reached to fetch it \(127\.0\.0\.1:9 did not answer"):
        export_onnx("someone/some-model", tmp_path)


def test_eval_labels_may_be_the_models_label_names(checkpoints, tmp_path):
    """Issue 30, item 5: a user's labelled file names its labels; ids still work, and a name the model does not
    have is an error listing the ones it has."""
    from ortpipe.export.data import DataError

    data = tmp_path / "eval.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{['label_a', 'LABEL_B', 2][i % 3]}\n"
                                                  for i, t in enumerate(PROBE_TEXTS)))
    manifest = build_bundle(str(checkpoints["bert"]), tmp_path / "b", BuildOptions(eval_data=data, fp16=False),
                            echo=lambda line: None)
    assert 0.0 <= manifest.variants["fp32"].validation["accuracy"] <= 1.0
    data.write_text("sentence\tlabel\nfine\tbilling\n")
    with pytest.raises(DataError, match=r"label 'billing' is not an integer label id, .* the model's labels are "
                                         r"\['LABEL_A', 'LABEL_B', 'LABEL_C'\]"):
        build_bundle(str(checkpoints["bert"]), tmp_path / "c", BuildOptions(eval_data=data, fp16=False),
                     echo=lambda line: None)


def test_export_and_doctor_give_the_int8_gate_with_its_numbers(checkpoints, tmp_path, capsys):
    """Issue 30, item 7: export said 'failed its gate' with no numbers, and doctor showed only its own probe."""
    from ortpipe.cli import main

    lines: list[str] = []
    build_bundle(str(checkpoints["bert"]), tmp_path / "b", BuildOptions(min_int8_agreement=1.01, fp16=False),
                 echo=lines.append)
    warning = next(line for line in lines if "warning: int8" in line)
    assert "FAILED at export: label agreement with fp32" in warning and "(gate ≥ 101.00%)" in warning
    assert main(["doctor", "--bundle", str(tmp_path / "b")]) == 0
    assert "FAILED at export: label agreement with fp32" in capsys.readouterr().out


def test_a_bundle_folder_is_readable_by_other_users(checkpoints, tmp_path):
    """Issue 30, item 4: the folder came out drwx------ (the staging folder's mode), so a service user could not
    read a bundle an admin exported."""
    import os
    import stat

    build_bundle(str(checkpoints["bert"]), tmp_path / "b", BuildOptions(fp16=False), echo=lambda line: None)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o777 & ~umask
    assert (tmp_path / "b").stat().st_mode & stat.S_IROTH or umask & 0o004
