"""The CUDA path on a real GPU: fp16 chosen after its probe check, IO binding, node placement.

Runs where onnxruntime-gpu activates CUDA (``benchmarks/gpu_check.sh`` on the GPU machine), on the
bundle named by ``$ORTPIPE_TEST_BUNDLE`` (else the default bundle); skips cleanly anywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ortpipe.runtime import TextClassifier, default_bundle_dir
from ortpipe.runtime.probes import ProbeSet
from ortpipe.runtime.providers import cuda_available

pytestmark = pytest.mark.gpu

# the heavy ops: none of them may be left on the CPU in a CUDA session
HEAVY_OPS = {"Attention", "MultiHeadAttention", "MatMul", "Gemm", "SkipLayerNormalization", "LayerNormalization",
             "EmbedLayerNormalization", "FastGelu", "BiasGelu", "Gelu", "Softmax"}


@pytest.fixture(scope="module")
def gpu_bundle() -> Path:
    if not cuda_available():
        pytest.skip("needs onnxruntime-gpu and a CUDA device (run benchmarks/gpu_check.sh on a GPU machine)")
    bundle = Path(os.environ.get("ORTPIPE_TEST_BUNDLE") or default_bundle_dir())
    if not (bundle / "model.fp16.onnx").is_file():
        pytest.skip(f"no bundle with an fp16 variant at {bundle} (set ORTPIPE_TEST_BUNDLE)")
    return bundle


def test_auto_on_cuda_picks_fp16_after_its_probe_check(gpu_bundle):
    clf = TextClassifier.load(gpu_bundle)
    assert clf.provider == "cuda" and clf.variant == "fp16" and clf.rejected is None
    report = clf.check()
    assert report.passed and report.agreement == 1.0 and report.max_abs_diff <= 0.05


def test_fp16_labels_match_the_fp32_reference(gpu_bundle):
    clf = TextClassifier.load(gpu_bundle, variant="fp16", provider="cuda")
    probes = ProbeSet.read(gpu_bundle / "probes.json")
    logits = clf.infer(clf.tokenize(list(probes.texts)))
    assert (logits.argmax(-1) == probes.logits.argmax(-1)).all()
    assert np.abs(logits - probes.logits).max() < 0.05


def test_io_binding_gives_what_a_plain_run_gives(gpu_bundle):
    clf = TextClassifier.load(gpu_bundle, variant="optimized", provider="cuda")
    encoded = clf.tokenize(["This course is amazing!", "a longer sentence, padded against the first one"])
    bound = clf.model(encoded)
    (plain,) = clf.model.session.run(None, clf.model.feed(encoded))
    np.testing.assert_allclose(bound, plain, atol=1e-5)
    probes = ProbeSet.read(gpu_bundle / "probes.json")
    cuda = clf.infer(clf.tokenize(list(probes.texts)))
    assert np.abs(cuda - probes.logits).max() < 1e-3  # fp32 on CUDA against fp32 on the export CPU


@pytest.mark.parametrize("variant", ["optimized", "fp16"])
def test_no_heavy_op_falls_back_to_the_cpu(gpu_bundle, variant):
    clf = TextClassifier.load(gpu_bundle, variant=variant, provider="cuda")
    placement = clf.model.placement()
    assert placement.get("CUDAExecutionProvider"), placement
    left_on_cpu = set(placement.get("CPUExecutionProvider", {}))
    assert not left_on_cpu & HEAVY_OPS, f"heavy ops on the CPU: {sorted(left_on_cpu & HEAVY_OPS)}"
