"""ortpipe's exception hierarchy.

Every error ortpipe raises on purpose derives from :class:`OrtpipeError`, so a
service can catch one type. Errors from ONNX Runtime or the tokenizer are
wrapped (``raise ... from exc``) with a message that says what went wrong.

    OrtpipeError
    ├── InputError          bad texts or options given to a call (also a ValueError)
    ├── BundleError         a bundle directory that cannot be used
    │   └── IntegrityError  a file whose sha256 differs from the manifest
    ├── ProviderError       an execution provider that cannot be activated
    └── InferenceError      ONNX Runtime failed while running the graph
"""

from __future__ import annotations


class OrtpipeError(Exception):
    """Base class of every error ortpipe raises on purpose."""


class InputError(OrtpipeError, ValueError):
    """The texts or options passed to a call are not usable."""


class BundleError(OrtpipeError):
    """A bundle directory is missing, incomplete or inconsistent."""


class IntegrityError(BundleError):
    """A bundle file does not match the sha256 recorded in its manifest."""


class ProviderError(OrtpipeError):
    """The requested ONNX Runtime execution provider cannot be activated."""


class InferenceError(OrtpipeError):
    """ONNX Runtime failed while running the model."""
