"""Fixtures of the pytest-benchmark suite: the bundle, the SST-2 sentences, each loaded path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ortpipe.benchmarks.paths import GPU_PATH_NAMES, OPENVINO_PATH_NAMES, PATH_NAMES, cuda_available, load_path
from ortpipe.export.data import read_labelled_tsv, sst2_dir
from ortpipe.runtime.bundle import default_bundle_dir
from ortpipe.runtime.manifest import read_manifest

THREADS = int(os.environ.get("ORTPIPE_BENCH_THREADS", os.cpu_count() or 1))


@pytest.fixture(scope="session")
def bench_bundle() -> Path:
    bundle = Path(os.environ.get("ORTPIPE_BENCH_BUNDLE", default_bundle_dir()))
    if not (bundle / "ortpipe.json").is_file():
        pytest.skip(f"no bundle at {bundle}: run `ortpipe export` first (or set ORTPIPE_BENCH_BUNDLE)")
    return bundle


@pytest.fixture(scope="session")
def sst2_sentences() -> list[str]:
    path = sst2_dir() / "test.tsv"
    if not path.is_file():
        pytest.skip(f"SST-2 test set not found at {path} (set ORTPIPE_SST2_DIR)")
    return read_labelled_tsv(path).texts


@pytest.fixture(scope="module", params=PATH_NAMES + GPU_PATH_NAMES + OPENVINO_PATH_NAMES)
def classifier_path(request, bench_bundle):
    if request.param in GPU_PATH_NAMES and not cuda_available():
        pytest.skip(f"{request.param}: this ONNX Runtime has no CUDA execution provider")
    if request.param in OPENVINO_PATH_NAMES and not (bench_bundle / "model.static-int8.onnx").is_file():
        pytest.skip(f"{request.param}: the bundle has no static-int8 variant (export with ortpipe[openvino])")
    if request.param in OPENVINO_PATH_NAMES:
        pytest.importorskip("openvino", reason="the OpenVINO paths need ortpipe[openvino]")
    return load_path(request.param, bench_bundle, read_manifest(bench_bundle), THREADS)
