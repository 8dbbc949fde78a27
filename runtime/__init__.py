"""ortpipe's runtime: a torch-free text classifier over an exported bundle.

    from ortpipe.runtime import TextClassifier

    clf = TextClassifier.load("bundles/sst2-minilm", variant="int8")
    clf("This course is amazing!")   # [{'label': 'POSITIVE', 'score': 0.9...}]

Needs only numpy, tokenizers and onnxruntime; never imports torch,
transformers or optimum.
"""

from ortpipe.runtime.bundle import Bundle, default_bundle_dir, open_bundle
from ortpipe.runtime.classifier import TextClassifier
from ortpipe.runtime.errors import (
    BundleError,
    InferenceError,
    InputError,
    IntegrityError,
    OrtpipeError,
    ProviderError,
)
from ortpipe.runtime.machine import describe_machine
from ortpipe.runtime.manifest import Manifest, Variant, read_manifest
from ortpipe.runtime.probes import ProbeReport
from ortpipe.runtime.tokenize import Encoded
from ortpipe.runtime.zero_shot_classifier import ZeroShotClassifier

__all__ = [
    "Bundle",
    "BundleError",
    "Encoded",
    "InferenceError",
    "InputError",
    "IntegrityError",
    "Manifest",
    "OrtpipeError",
    "ProbeReport",
    "ProviderError",
    "TextClassifier",
    "Variant",
    "ZeroShotClassifier",
    "default_bundle_dir",
    "describe_machine",
    "open_bundle",
    "read_manifest",
]
