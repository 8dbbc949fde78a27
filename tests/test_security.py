"""Keys and bundle paths as units (serve/security.py, the manifest's file names): no server."""

from __future__ import annotations

import shutil

import pytest

from bundle_edits import edit_manifest
from ortpipe.runtime import BundleError, TextClassifier
from ortpipe.runtime.errors import OrtpipeError
from ortpipe.serve.security import api_keys_from, key_matches


def test_keys_come_from_flags_or_the_environment_and_compare_whole():
    assert api_keys_from(["a", " b "]) == ("a", "b")
    assert api_keys_from(None, {"ORTPIPE_API_KEYS": "x, y,,"}) == ("x", "y")
    assert api_keys_from(None, {}) == ()
    assert key_matches("secret", ["other", "secret"]) and not key_matches("secre", ["secret"])
    assert not key_matches("", ["secret"])


def test_blank_keys_refuse_to_start_and_a_trailing_comma_is_fine():
    for flags, environ in (([""], {}), ([" "], {}), (["real-key", ""], {}), (None, {"ORTPIPE_API_KEYS": " , "})):
        with pytest.raises(OrtpipeError, match="empty key"):
            api_keys_from(flags, environ)
    assert api_keys_from(None, {"ORTPIPE_API_KEYS": "k1,"}) == ("k1",)


@pytest.mark.parametrize("name", ["../outside/tok.json", "/etc/passwd", "sub/tokenizer.json", "..", ""])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused(bundle_copy, name):
    edit_manifest(bundle_copy, lambda m: m.update(tokenizer_file=name))
    with pytest.raises(BundleError, match="must be a plain file name inside the bundle folder"):
        TextClassifier.load(bundle_copy)


def test_a_symlink_out_of_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.copy(bundle_copy / "tokenizer.json", outside)
    (bundle_copy / "tokenizer.json").unlink()
    (bundle_copy / "tokenizer.json").symlink_to(outside)
    with pytest.raises(BundleError, match="is a symlink to .* outside the bundle folder"):
        TextClassifier.load(bundle_copy)
