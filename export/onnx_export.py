"""Hugging Face checkpoint → ONNX, with optimum's exporter.

optimum builds the graph with dynamic ``batch_size`` and ``sequence_length``
axes and runs its own check against PyTorch on dummy inputs; ortpipe's probe
validation (:mod:`ortpipe.export.validate`) then measures real texts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnx

from ortpipe.runtime.errors import OrtpipeError

TASK = "text-classification"


class ExportError(OrtpipeError):
    """The model could not be exported or failed validation."""


@dataclass(frozen=True)
class ExportedGraph:
    """The ONNX file optimum wrote and what it declares."""

    path: Path
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def resolve_model(model: str) -> tuple[str, bool]:
    """Return ``(model, is_local)``; a path that looks local must exist."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExportError(f"{path} is a folder but not a Hugging Face checkpoint (no config.json)")
        return str(path.resolve()), True
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ExportError(f"model {model!r} is not a checkpoint folder")
    return model, False


HUB_CONNECT_S = 3.0


def _refuse_unless_hub_reachable(model: str) -> None:
    """An ``ExportError`` at once when the hub is offline or does not answer, instead of the hub client's
    retries (30 s of "Retrying in 8s [Retry 5/5]" before the same answer)."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    why = None
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        why = "HF_HUB_OFFLINE is set"
    else:
        endpoint = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
        port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
        try:
            socket.create_connection((endpoint.hostname, port), timeout=HUB_CONNECT_S).close()
        except OSError as exc:
            why = f"{endpoint.hostname}:{port} did not answer within {HUB_CONNECT_S:g} s ({exc})"
    if why:
        raise ExportError(f"{model!r} is not a local folder, and the Hugging Face Hub could not be reached to "
                          f"fetch it ({why}). Pass the path of a downloaded checkpoint instead.")


def export_onnx(model: str, out_dir: Path, opset: int | None = None, atol: float = 1e-4) -> ExportedGraph:
    """Export a sequence classifier to ``out_dir/model.onnx`` with optimum.

    Args:
        model: a local checkpoint folder, or a hub id (needs the hub to be reachable).
        out_dir: a scratch folder for optimum's output.
        opset: ONNX opset; None takes optimum's default for the architecture.
        atol: tolerance for optimum's own dummy-input check.

    Raises:
        ExportError: the hub is unreachable for a hub id, the architecture is
            not supported, or optimum's check fails.
    """
    from optimum.exporters.onnx import main_export

    name, is_local = resolve_model(model)
    logging.getLogger("optimum").setLevel(logging.ERROR)
    if not is_local:
        _refuse_unless_hub_reachable(model)
    try:
        main_export(name, output=out_dir, task=TASK, opset=opset, atol=atol, do_validation=True,
                    local_files_only=is_local, library_name="transformers")
    except (OSError, ConnectionError) as exc:
        if is_local:
            raise ExportError(f"cannot read checkpoint {name}: {exc}") from exc
        raise ExportError(
            f"{model!r} is not a local folder, and the Hugging Face Hub could not be reached to fetch it "
            f"(this machine may have no internet). Pass the path of a downloaded checkpoint instead. "
            f"Cause: {str(exc).splitlines()[0][:200]}") from exc
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ExportError(f"optimum could not export {model!r} for {TASK}: {exc}") from exc
    path = out_dir / "model.onnx"
    graph = onnx.load(str(path), load_external_data=False)
    opset_used = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ExportedGraph(path=path, opset=opset_used,
                         input_names=tuple(i.name for i in graph.graph.input),
                         output_names=tuple(o.name for o in graph.graph.output))
