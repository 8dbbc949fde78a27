"""The engines that run a bundle's ONNX files: ONNX Runtime (always) and OpenVINO (``ortpipe[openvino]``).

    model = make_model("openvino", bundle.model_path, threads=2)   # an OnnxModel or an OpenVinoModel

Both take the same options and have the same call (an :class:`~ortpipe.runtime.tokenize.Encoded`
batch → logits), so the classifier, its batching loop, the probe check and the server do not know
which one runs.
"""

from __future__ import annotations

from pathlib import Path

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.openvino_model import OpenVinoModel, openvino_installed

BACKENDS = ("onnxruntime", "openvino")
DEFAULT_BACKEND = "onnxruntime"
# the files OpenVINO can read: dynamic int8 holds ONNX Runtime's own quantized ops (QAttention …)
OPENVINO_VARIANTS = ("fp32", "optimized", "static-int8")


def check_backend(backend: str | None) -> str:
    """``backend`` checked (None: the default, ONNX Runtime)."""
    if backend is None:
        return DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def installed_backends() -> tuple[str, ...]:
    """The backends that can run here: ONNX Runtime, and OpenVINO where it is installed."""
    return BACKENDS if openvino_installed() else (DEFAULT_BACKEND,)


def runs_on(backend: str, variant: str) -> bool:
    """Whether ``backend`` can run the file of ``variant``."""
    return backend == "onnxruntime" or variant in OPENVINO_VARIANTS


def make_model(backend: str, path: Path, **options) -> OnnxModel | OpenVinoModel:
    """The model of ``path`` on ``backend``, with ``OnnxModel``'s options."""
    return (OpenVinoModel if check_backend(backend) == "openvino" else OnnxModel)(path, **options)
