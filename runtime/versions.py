"""Installed versions of the libraries a figure or a bundle depends on."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Iterable

TRACKED = ("ortpipe", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime",
           "onnxruntime-gpu", "tokenizers", "peft", "numpy")


def library_versions(names: Iterable[str] = TRACKED) -> dict[str, str]:
    """``{distribution: version}`` for those of ``names`` that are installed."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
