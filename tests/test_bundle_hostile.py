"""Bundles a careless operator or an attacker leaves behind (issue 27, cases 10, 12 and 13): refused at load."""

from __future__ import annotations

import json
import shutil

import pytest

from bundle_edits import edit_manifest
from ortpipe.runtime import BundleError, TextClassifier
from ortpipe.cli import main
from ortpipe.runtime.manifest import sha256_of


def _replace_model(bundle, donor, variant: str = "fp32") -> None:
    """Put ``donor``'s model file in place of ``variant``'s and record its sha256: only the weights are wrong."""
    manifest = json.loads((bundle / "ortpipe.json").read_text())
    name = manifest["variants"][variant]["file"]
    shutil.copy(donor / json.loads((donor / "ortpipe.json").read_text())["variants"][variant]["file"], bundle / name)
    edit_manifest(bundle, lambda m: (m.update(default_variant=variant),
                                     m["variants"][variant].update(sha256=sha256_of(bundle / name))))


def test_a_replaced_float_model_with_a_recomputed_hash_is_refused(bundle_copy, bundles, capsys):
    """Case 10: another model's weights under the right hash fail the probe check of the chosen float variant."""
    _replace_model(bundle_copy, bundles["distilbert"])
    with pytest.raises(BundleError, match="variant 'fp32' failed its probe check here"):
        TextClassifier.load(bundle_copy)
    assert main(["classify", "--bundle", str(bundle_copy), "This course is amazing!"]) == 2
    assert "failed its probe check" in capsys.readouterr().err
    assert main(["doctor", "--bundle", str(bundle_copy)]) == 1


@pytest.mark.parametrize("digest", ["", "0" * 63, "not-a-hash" * 7])
def test_an_empty_or_malformed_hash_is_a_bundle_error(bundle_copy, digest):
    """Case 10: an empty sha256 used to skip the check."""
    edit_manifest(bundle_copy, lambda m: m["variants"]["fp32"].update(sha256=digest))
    with pytest.raises(BundleError, match="not 64 hex digits"):
        TextClassifier.load(bundle_copy, variant="fp32")


def test_a_nan_probe_gate_is_refused(bundle_copy):
    """Case 10: a NaN in the gate made every comparison pass."""
    manifest = json.loads((bundle_copy / "ortpipe.json").read_text())
    gate_of = manifest["default_variant"]
    edit_manifest(bundle_copy, lambda m: m["variants"][gate_of]["validation"]["probe_gate"].update(
        max_abs_diff=float("nan")))
    with pytest.raises(BundleError, match="not a finite number"):
        TextClassifier.load(bundle_copy).check(refresh=True)


@pytest.mark.parametrize("labels", [1, 4])
def test_a_manifest_naming_other_than_the_models_labels_is_refused(bundle_copy, capsys, labels):
    """Case 12: 1 label for 3 logits was a traceback, 4 labels for 3 were accepted silently."""
    edit_manifest(bundle_copy, lambda m: m.update(id2label={str(i): f"L{i}" for i in range(labels)}))
    with pytest.raises(BundleError, match=f"names {labels} label.* gives 3 logits"):
        TextClassifier.load(bundle_copy)
    assert main(["classify", "--bundle", str(bundle_copy), "fine"]) == 2
    assert main(["doctor", "--bundle", str(bundle_copy)]) == 1
    err = capsys.readouterr().err
    assert "ortpipe: error" in err and "Traceback" not in err


def test_a_max_length_beyond_the_models_positions_is_refused_at_load(bundle_copy):
    """Case 13: it failed only on long texts, as a 500 naming ONNX Runtime's nodes."""
    edit_manifest(bundle_copy, lambda m: m.update(max_length=1024))  # the tiny models have 128 positions
    with pytest.raises(BundleError, match="fails on a text of the manifest's max_length \\(1024 tokens\\)"):
        TextClassifier.load(bundle_copy)
