"""Provider choice: auto, explicit CPU, and CUDA that never falls back silently."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from ortpipe.runtime import ProviderError, TextClassifier
from ortpipe.runtime.providers import check_activated, cuda_library_error, requested_providers

CUDA = "CUDAExecutionProvider"
HAS_CUDA = CUDA in ort.get_available_providers()


def test_auto_takes_cuda_only_when_available():
    assert requested_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert requested_providers("auto", [CUDA, "CPUExecutionProvider"])[0] == CUDA


def test_unknown_provider_is_refused():
    with pytest.raises(ProviderError, match="provider must be one of"):
        requested_providers("gpu", [])


def test_cuda_missing_from_onnxruntime_is_a_clear_error():
    with pytest.raises(ProviderError, match="no CUDA support.*onnxruntime-gpu"):
        requested_providers("cuda", ["CPUExecutionProvider"])


def test_cuda_requested_but_not_activated_never_falls_back():
    with pytest.raises(ProviderError, match="could not activate CUDA"):
        check_activated("cuda", ["CPUExecutionProvider"])
    assert check_activated("auto", ["CPUExecutionProvider"]) == "cpu"
    assert check_activated("auto", [CUDA, "CPUExecutionProvider"]) == "cuda"


def test_cpu_session_reports_cpu(bert_bundle):
    clf = TextClassifier.load(bert_bundle, provider="cpu")
    assert clf.provider == "cpu" and clf.model.active_providers == ["CPUExecutionProvider"]


@pytest.mark.skipif(HAS_CUDA, reason="this ONNX Runtime has CUDA")
def test_loading_with_cuda_on_a_cpu_build_fails_cleanly(bert_bundle):
    with pytest.raises(ProviderError):
        TextClassifier.load(bert_bundle, provider="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA device")
def test_cuda_matches_cpu(bert_bundle):
    cpu = TextClassifier.load(bert_bundle, variant="fp32", provider="cpu")
    cuda = TextClassifier.load(bert_bundle, variant="fp32", provider="cuda")
    assert cuda.provider == "cuda"
    texts = ["This course is amazing!", "bad", "a much longer sentence than the others"]
    for a, b in zip(cpu(texts, top_k=None), cuda(texts, top_k=None)):
        assert [d["label"] for d in a] == [d["label"] for d in b]
        assert all(abs(x["score"] - y["score"]) < 1e-3 for x, y in zip(a, b))


def test_a_cuda_library_that_cannot_load_is_named_in_the_loaders_words(tmp_path):
    broken = tmp_path / "libonnxruntime_providers_cuda.so"
    broken.write_bytes(b"not an ELF file")
    assert "invalid ELF header" in cuda_library_error(broken) or "too short" in cuda_library_error(broken)
    assert "cannot open shared object file" in cuda_library_error(tmp_path / "libmissing.so")


@pytest.mark.skipif(HAS_CUDA, reason="this ONNX Runtime has CUDA")
def test_the_cpu_wheel_says_it_has_no_cuda_provider_library():
    assert "is not installed" in cuda_library_error()
