"""Which benchmark paths ``ortpipe bench`` runs on a bundle, and the ones it refuses before running any."""

from __future__ import annotations

import dataclasses

import pytest

from ortpipe.benchmarks.paths import OPENVINO_PATH_NAMES, PATH_NAMES, check_paths, default_path_names
from ortpipe.runtime.errors import OrtpipeError
from ortpipe.runtime.manifest import read_manifest
from ortpipe.runtime.openvino_model import openvino_installed


def test_a_bundle_without_static_int8_gets_no_openvino_path_and_asking_for_one_says_how_to_make_it(bert_bundle):
    with_it = read_manifest(bert_bundle)
    assert "static-int8" in with_it.variants
    without = dataclasses.replace(with_it, variants={k: v for k, v in with_it.variants.items() if k != "static-int8"})
    assert bool(set(default_path_names(with_it)) & set(OPENVINO_PATH_NAMES)) == openvino_installed()
    assert not set(default_path_names(without)) & set(OPENVINO_PATH_NAMES)
    assert set(PATH_NAMES) <= set(default_path_names(without))
    check_paths(PATH_NAMES + OPENVINO_PATH_NAMES, with_it)
    with pytest.raises(OrtpipeError, match="lacks.*--static-int8"):
        check_paths(("ortpipe-int8", OPENVINO_PATH_NAMES[0]), without)
    with pytest.raises(OrtpipeError, match="unknown path"):
        check_paths(("ortpipe-int9",), without)
