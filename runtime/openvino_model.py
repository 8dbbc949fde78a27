"""Stage 2 on OpenVINO: token ids → logits for a bundle's ONNX file, the ``openvino`` backend.

OpenVINO reads the bundle's ONNX file itself (no converted copy, so the manifest's sha256 still
covers what runs). It is the fastest CPU engine for the statically quantized variant
(``static-int8``: NNCF's QDQ int8, made at export) on CPUs with AVX-512 VNNI or AMX, where its int8
kernels keep the whole layer in int8. It also reads the ``fp32`` and ``optimized`` files (it converts
ONNX Runtime's fused attention and layer-norm ops), not dynamic ``int8`` (ONNX Runtime's own
``QAttention`` and ``QEmbedLayerNormalization``). Which backend wins on a machine is measured, not
assumed (:mod:`.fastest`).

Its computations are in fp32 between the int8 products (``INFERENCE_PRECISION_HINT=f32``): OpenVINO
would pick bf16 on CPUs that have it, and that changes a variant's numbers away from what its
probes recorded. With fixed (static) scales every row is computed on its own, so a text's scores
do not depend on its batch neighbours.
"""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np

from ortpipe.runtime.errors import BundleError, InferenceError, ProviderError
from ortpipe.runtime.inference import KNOWN_INPUTS, check_threads
from ortpipe.runtime.memory import DEFAULT_MEMORY, MemoryInfo, batch_token_cap
from ortpipe.runtime.tokenize import Encoded

INSTALL_HINT = "pip install 'ortpipe[openvino]'"


def openvino_installed() -> bool:
    """Whether the ``openvino`` package imports here."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class OpenVinoModel:
    """An OpenVINO CPU model compiled from one bundle variant; the interface of
    :class:`~ortpipe.runtime.inference.OnnxModel`.

    Args:
        path: the ``.onnx`` file.
        provider: ``"auto"`` or ``"cpu"`` (OpenVINO's CPU plugin); ``"cuda"`` is a :class:`ProviderError`.
        threads: OpenVINO's inference threads; None lets it decide.
        memory: as for ``OnnxModel``: ``"lean"`` (default) caps padded tokens per call at the same size.
        spinning, shared_threads: ONNX Runtime settings, without effect here (OpenVINO's own TBB pool
            sleeps between calls).
    """

    backend = "openvino"
    provider = "cpu"
    shared_threads = False

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None, spinning: bool = True,
                 memory: str | None = None, shared_threads: bool = False):
        if provider not in ("auto", "cpu"):
            raise ProviderError(f"the openvino backend runs on the CPU only; provider {provider!r} needs the "
                                "onnxruntime backend")
        if threads is not None:
            check_threads(threads)
        try:
            import openvino as ov
        except ImportError as exc:
            raise ProviderError(f"the openvino backend needs OpenVINO: {INSTALL_HINT}") from exc
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with its whole C++ trace
            raise BundleError(f"OpenVINO cannot compile {path}: {_reason(exc)} (it runs the fp32, optimized and "
                              "static-int8 files; dynamic int8 holds ONNX Runtime's own quantized ops)") from exc
        self.path = Path(path)
        self.engine_key = f"openvino {ov.__version__} cpu"  # the probe check's cache: its kernels, not ORT's
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS")) or threads
        self._memory = MemoryInfo("openvino", memory or DEFAULT_MEMORY, max_batch_tokens=batch_token_cap(memory))
        self.input_names = tuple(port.get_any_name() for port in self.compiled.inputs)
        unknown = [name for name in self.input_names if name not in KNOWN_INPUTS]
        if unknown:
            raise BundleError(f"{path}: graph input {unknown[0]!r} is not one ortpipe can feed (it feeds "
                              f"{KNOWN_INPUTS})")
        width = self.compiled.outputs[0].get_partial_shape()[-1]
        self.output_width = width.get_length() if width.is_static else None
        self._requests: queue.SimpleQueue = queue.SimpleQueue()  # one infer request per concurrent caller

    @property
    def memory(self) -> MemoryInfo:
        return self._memory

    @property
    def active_providers(self) -> list[str]:
        return ["OpenVINO CPU"]

    def placement(self) -> dict[str, dict[str, int]]:
        """Every op runs on OpenVINO's CPU plugin: nothing to list."""
        return {}

    def feed(self, encoded: Encoded) -> dict[str, np.ndarray]:
        return {name: getattr(encoded, name) for name in self.input_names}

    def __call__(self, encoded: Encoded) -> np.ndarray:
        """Run the graph; returns float32 logits of shape ``(batch, num_labels)``. Thread-safe."""
        if len(encoded) == 0:
            raise InferenceError("cannot run the model on an empty batch")
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer(self.feed(encoded))
            logits = np.array(request.get_output_tensor(0).data, dtype=np.float32)
        except Exception as exc:
            raise InferenceError(f"OpenVINO failed on a batch of shape {encoded.input_ids.shape}: "
                                 f"{_reason(exc)}") from exc
        finally:
            self._requests.put(request)
        return logits


def _reason(exc: Exception) -> str:
    """The informative lines of an OpenVINO error, without its C++ source locations."""
    lines = [line.strip() for line in str(exc).splitlines()
             if line.strip() and not line.startswith(("Exception from src/", "Check '"))]
    return " ".join(lines)[:300] or type(exc).__name__
