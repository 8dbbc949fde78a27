"""The openvino backend (runtime/openvino_model.py, runtime/backends.py) against ONNX Runtime on the same files."""

import json
import random
import shutil

import numpy as np
import pytest

from ortpipe.runtime import TextClassifier
from ortpipe.runtime.backends import check_backend, installed_backends, runs_on
from ortpipe.runtime.errors import BundleError, InputError, ProviderError

TEXTS = ["This course is amazing!", "bad", "ok then", "The plot was thin, but the actors carried every scene.",
         "I waited an hour and the food was cold.", "fine", "Nothing about this film works, not even the music."]


def test_backend_names_are_checked():
    assert check_backend(None) == "onnxruntime"
    with pytest.raises(InputError, match="backend must be one of onnxruntime, openvino"):
        check_backend("tensorrt")
    assert runs_on("onnxruntime", "int8") and runs_on("openvino", "static-int8") and runs_on("openvino", "optimized") and not runs_on("openvino", "int8")


def test_openvino_gives_onnx_runtimes_logits_on_the_fp32_file(static_bundle):
    ort = TextClassifier.load(static_bundle, variant="fp32", threads=1)
    ov = TextClassifier.load(static_bundle, variant="fp32", backend="openvino", threads=1)
    encoded = ort.tokenize(TEXTS)
    assert ov.backend == "openvino" and ort.backend == "onnxruntime"
    np.testing.assert_allclose(ov.infer(encoded), ort.infer(encoded), atol=1e-4)


def test_openvino_loads_static_int8_by_default_and_it_is_checked_here(static_bundle):
    clf = TextClassifier.load(static_bundle, backend="openvino")
    assert clf.variant == "static-int8" and clf.rejected is None
    assert clf.check().passed
    assert clf.batch_invariant and clf.default_batch_size() == 32
    assert "backend='openvino'" in repr(clf)


def test_static_int8_scores_do_not_depend_on_the_batch(static_bundle):
    """The same text alone and in shuffled batches of every size gets identical scores."""
    clf = TextClassifier.load(static_bundle, backend="openvino")
    alone = {text: clf(text, top_k=None) for text in TEXTS}
    rng = random.Random(0)
    for batch_size in (2, 3, 7, 32):
        shuffled = TEXTS * 3
        rng.shuffle(shuffled)
        for text, result in zip(shuffled, clf(shuffled, top_k=None, batch_size=batch_size)):
            assert result == alone[text], (text, batch_size)


def test_openvino_cannot_run_onnx_runtimes_fused_files(static_bundle):
    with pytest.raises(BundleError, match="OpenVINO cannot compile .*model.int8.onnx: .*QAttention"):
        TextClassifier.load(static_bundle, variant="int8", backend="openvino")


def test_openvino_runs_on_the_cpu_only(static_bundle):
    with pytest.raises(ProviderError, match="runs on the CPU only"):
        TextClassifier.load(static_bundle, variant="fp32", backend="openvino", provider="cuda")


def test_openvino_falls_back_to_fp32_without_static_int8(static_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(static_bundle, bundle)
    manifest = json.loads((bundle / "ortpipe.json").read_text())
    del manifest["variants"]["static-int8"]
    (bundle / "ortpipe.json").write_text(json.dumps(manifest))
    (bundle / "model.static-int8.onnx").unlink()
    clf = TextClassifier.load(bundle, backend="openvino", verify=False)
    assert clf.variant == "fp32" and clf.backend == "openvino"


def test_without_openvino_only_onnx_runtime_is_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert installed_backends() == ("onnxruntime",)
