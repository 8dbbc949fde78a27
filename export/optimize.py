"""Fuse transformer subgraphs with ONNX Runtime's transformer optimizer.

Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization … are
fused by ``onnxruntime.transformers.optimizer``; the result is still fp32.
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


def optimize_graph(source: Path, target: Path, num_heads: int, hidden_size: int) -> OptimizedGraph:
    """Write the fused fp32 graph of ``source`` to ``target`` and count the fused ops."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    options = FusionOptions("bert")
    try:
        optimized = optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                   optimization_options=options, use_gpu=False)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime's transformer optimizer failed on {source}: {exc}") from exc
    counts = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    optimized.save_model_to_file(str(target))
    return OptimizedGraph(target, counts)
