"""Shared fixtures: tiny random checkpoints and the bundles exported from them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import ARCHITECTURES, make_tiny_classifier  # noqa: E402


@pytest.fixture(autouse=True)
def private_ortpipe_home(tmp_path, monkeypatch) -> Path:
    """Each test gets its own ``$ORTPIPE_HOME``: no probe-check cache leaks between tests or into ~/.cache."""
    home = tmp_path / "ortpipe-home"
    monkeypatch.setenv("ORTPIPE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One tiny random 3-label checkpoint per architecture, plus a multi-label BERT."""
    root = tmp_path_factory.mktemp("checkpoints")
    made = {arch: make_tiny_classifier(arch, root / arch) for arch in ARCHITECTURES}
    made["bert-multilabel"] = make_tiny_classifier("bert", root / "bert-multilabel", num_labels=4,
                                                   problem_type="multi_label_classification", seed=1)
    return made


@pytest.fixture(scope="session")
def bundles(checkpoints, tmp_path_factory) -> dict[str, Path]:
    """Each checkpoint exported into a bundle with fp32, optimized and int8 variants."""
    from ortpipe.export.bundle import build_bundle

    root = tmp_path_factory.mktemp("bundles")
    built = {}
    for name, checkpoint in checkpoints.items():
        build_bundle(str(checkpoint), root / name, echo=lambda line: None)
        built[name] = root / name
    return built


# tiny NLI models: the entailment label at different indices, in different spellings (transformers finds any)
NLI_LABELS = {"bert": {0: "contradiction", 1: "neutral", 2: "entailment"},
              "distilbert": {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"},
              "roberta": {0: "Contradiction", 1: "Entailment", 2: "Neutral"},
              "deberta-v2": {0: "entailment", 1: "not_entailment"}}


@pytest.fixture(scope="session")
def nli_models(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Per family, a tiny random NLI checkpoint and its bundle: ``{arch: (checkpoint, bundle)}``."""
    from ortpipe.export.bundle import build_bundle

    root, made = tmp_path_factory.mktemp("nli"), {}
    for arch, labels in NLI_LABELS.items():
        checkpoint = make_tiny_classifier(arch, root / arch / "checkpoint", id2label=labels, seed=3)
        build_bundle(str(checkpoint), root / arch / "bundle", echo=lambda line: None)
        made[arch] = (checkpoint, root / arch / "bundle")
    return made


@pytest.fixture(scope="session")
def bert_bundle(bundles) -> Path:
    return bundles["bert"]


@pytest.fixture
def bundle_copy(bert_bundle, tmp_path) -> Path:
    """A private copy of the tiny BERT bundle that a test may break."""
    import shutil

    target = tmp_path / "bundle"
    shutil.copytree(bert_bundle, target)
    return target


@pytest.fixture(scope="session")
def default_bundle(tmp_path_factory):
    """The default sentiment bundle rebuilt from the committed adapter: (manifest, path). Needs SST-2."""
    from ortpipe.export.data import sst2_dir

    if not (sst2_dir() / "test.tsv").is_file():
        pytest.skip(f"SST-2 not found at {sst2_dir()}: the default bundle's accuracy cannot be checked")
    from ortpipe.export.default_bundle import build_default_bundle

    return build_default_bundle(tmp_path_factory.mktemp("default") / "bundle")


@pytest.fixture(scope="session")
def static_bundle(tmp_path_factory) -> Path:
    """A tiny BERT bundle with NNCF's static-int8 variant (skips where ortpipe[openvino] is not installed)."""
    pytest.importorskip("nncf", reason="static int8 needs NNCF: pip install 'ortpipe[openvino]'")
    pytest.importorskip("openvino", reason="the openvino backend needs OpenVINO: pip install 'ortpipe[openvino]'")
    from ortpipe.export.bundle import BuildOptions, build_bundle

    root = tmp_path_factory.mktemp("static")
    checkpoint = make_tiny_classifier("bert", root / "checkpoint", seed=5)
    build_bundle(str(checkpoint), root / "bundle", BuildOptions(static_int8=True, fp16=False), echo=lambda line: None)
    return root / "bundle"
