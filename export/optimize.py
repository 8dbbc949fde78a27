"""Fuse transformer subgraphs with ONNX Runtime's transformer optimizer.

Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization … are
fused by ``onnxruntime.transformers.optimizer``. The result is fp32, or with
``float16=True`` the GPU fusions converted to float16 by the same optimizer,
with fp32 inputs and outputs kept (``keep_io_types``) so callers feed and read
the same arrays as for any other variant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ortpipe.export.onnx_export import ExportError


@dataclass(frozen=True)
class OptimizedGraph:
    path: Path
    fused_ops: dict[str, int]


def attention_shape(config) -> tuple[int, int]:
    """``(num_heads, hidden_size)`` of a BERT-family config (DistilBERT names them differently)."""
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    return int(heads), int(hidden)


def optimize_graph(source: Path, target: Path, num_heads: int, hidden_size: int,
                   float16: bool = False) -> OptimizedGraph:
    """Write the fused graph of ``source`` (fp32, or float16 for CUDA) to ``target`` and count the fused ops."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    options = FusionOptions("bert")
    try:
        # for float16, the Python fusions only (opt_level 0): ONNX Runtime's own graph pass needs the CUDA
        # provider at hand, and the session applies it at load on the GPU machine anyway
        optimized = optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                   optimization_options=options, use_gpu=float16, opt_level=0 if float16 else None)
        if float16:
            optimized.convert_float_to_float16(keep_io_types=True)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime's transformer optimizer failed on {source}: {exc}") from exc
    counts = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    optimized.save_model_to_file(str(target))
    return OptimizedGraph(target, counts)
