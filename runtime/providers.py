"""Choosing an ONNX Runtime execution provider, in one place.

``"auto"`` takes CUDA when ONNX Runtime can really activate it, else CPU.
``"cuda"`` never falls back: if ONNX Runtime did not activate CUDA for the
session, that is a :class:`ProviderError`.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Sequence

from ortpipe.runtime.errors import ProviderError

PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
PROVIDER_CHOICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """Whether the installed ONNX Runtime has the CUDA execution provider (it may still fail to activate)."""
    import onnxruntime

    return PROVIDER_NAMES["cuda"] in onnxruntime.get_available_providers()


def requested_providers(provider: str, available: Sequence[str]) -> list[str]:
    """The provider list to hand ONNX Runtime for a user's choice.

    Args:
        provider: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        available: ``onnxruntime.get_available_providers()``.

    Raises:
        ProviderError: an unknown choice, or CUDA asked for but not built into
            the installed ONNX Runtime.
    """
    if not isinstance(provider, str) or provider.lower() not in PROVIDER_CHOICES:
        raise ProviderError(f"provider must be one of {PROVIDER_CHOICES}, got {provider!r}")
    provider = provider.lower()
    cuda, cpu = PROVIDER_NAMES["cuda"], PROVIDER_NAMES["cpu"]
    if provider == "cpu":
        return [cpu]
    if provider == "cuda":
        if cuda not in available:
            raise ProviderError(
                "provider='cuda' was requested but the installed ONNX Runtime has no CUDA support "
                f"(available: {list(available)}). Install onnxruntime-gpu in place of onnxruntime: "
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
        return [cuda, cpu]
    return [cuda, cpu] if cuda in available else [cpu]


def cuda_library_error(library: str | Path | None = None) -> str | None:
    """Why ONNX Runtime's CUDA provider library cannot load here, in the loader's words; None if it loads.

    ONNX Runtime only logs this and goes on without CUDA. Loading the library
    ourselves makes the dynamic loader name what is missing (for example
    ``libcudnn.so.9: cannot open shared object file``).
    """
    if library is None:
        import onnxruntime

        library = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
        if not library.exists():
            return f"{library.name} is not installed (the CPU onnxruntime wheel has no CUDA provider)"
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        return str(exc)
    return None


def check_activated(provider: str, active: Sequence[str], model_path: str | Path | None = None) -> str:
    """Name the provider a session really uses, and refuse a silent CUDA fallback.

    Args:
        provider: the user's choice (``"auto"``, ``"cpu"``, ``"cuda"``).
        active: ``session.get_providers()``.
        model_path: the model, named in the error.

    Returns:
        ``"cuda"`` or ``"cpu"``.
    """
    cuda = PROVIDER_NAMES["cuda"]
    if cuda in active:
        return "cuda"
    if provider.lower() == "cuda":
        reason = cuda_library_error()
        raise ProviderError(
            "provider='cuda' was requested but ONNX Runtime could not activate CUDA for "
            f"{model_path or 'this session'} (active providers: {list(active)}). "
            + (f"The CUDA provider library does not load: {reason}. " if reason else "")
            + "Check the CUDA 12/13 and cuDNN 9 libraries that onnxruntime-gpu needs, or use provider='cpu'.")
    return "cpu"
