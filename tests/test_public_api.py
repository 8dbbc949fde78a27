"""The curated public API of ortpipe.runtime."""

import ortpipe.runtime as runtime

EXPECTED = {
    "Bundle", "BundleError", "Encoded", "InferenceError", "InputError", "IntegrityError", "Manifest",
    "OrtpipeError", "ProbeReport", "ProviderError", "TextClassifier", "Variant", "ZeroShotClassifier",
    "default_bundle_dir",
    "describe_machine", "open_bundle", "read_manifest",
}


def test_all_is_exactly_the_curated_api():
    assert set(runtime.__all__) == EXPECTED
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None


def test_every_error_derives_from_ortpipe_error():
    for name in ("BundleError", "InferenceError", "InputError", "IntegrityError", "ProviderError"):
        assert issubclass(getattr(runtime, name), runtime.OrtpipeError)
