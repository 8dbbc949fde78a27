"""The variants of a bundle as they are built: export with optimum, then fp32, optimized, int8 and fp16.

Each ``*_variant`` returns a :class:`Candidate` (its session, its validation, details) for
:func:`~ortpipe.export.bundle.build_bundle` to probe, time and write into the manifest.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ortpipe.export.data import LabelledTexts
from ortpipe.export.onnx_export import ExportedGraph, ExportError, export_onnx, resolve_model
from ortpipe.export.optimize import attention_shape, optimize_graph
from ortpipe.export.quantize import PORTABLE, quantize_int8
from ortpipe.export.validate import PROBE_TEXTS, compare_with_onnx, compare_with_torch
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.providers import cuda_available
from ortpipe.runtime.tokenize import TextTokenizer

if TYPE_CHECKING:
    from ortpipe.export.bundle import BuildOptions
    from ortpipe.export.steps import Progress

VARIANT_FILES = {"fp32": "model.onnx", "optimized": "model.optimized.onnx", "int8": "model.int8.onnx",
                 "static-int8": "model.static-int8.onnx", "fp16": "model.fp16.onnx"}
# fp16 logits differ from fp32 by a few 1e-3 (measured on MiniLM: see docs/gpu.md); the probe gate allows
# 0.05, and the export gate, where CUDA is at hand, asks the labels to agree on 99.5 % of the texts
FP16_PROBE_MAX_ABS_DIFF = 0.05
FP16_MIN_AGREEMENT = 0.995
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text")


def model_max_length(tokenizer, config) -> int:
    """The longest input the model takes: tokenizer limit capped by the position table."""
    limit = config.max_position_embeddings
    if config.model_type in ROBERTA_LIKE:
        limit -= (config.pad_token_id or 0) + 1
    tokenizer_limit = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, tokenizer_limit))


@dataclass
class Source:
    """The exported graph and what it came from: the PyTorch model and the bundle's tokenizer."""

    graph: ExportedGraph
    torch_model: object
    tokenizer: TextTokenizer


@dataclass
class Candidate:
    """One variant while the bundle is being built: its session, checks and timings."""

    model: OnnxModel | None  # None: a variant this machine cannot run (fp16 without CUDA)
    validation: dict
    details: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)


def export_source(model: str, staging: Path, options: BuildOptions) -> Source:
    """Export with optimum, load the PyTorch model beside it, write the bundle's tokenizer.json."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    graph = export_onnx(model, staging / "optimum", opset=options.opset, atol=options.atol)
    location, is_local = resolve_model(model)
    torch_model = AutoModelForSequenceClassification.from_pretrained(location, local_files_only=is_local).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=is_local)
    max_length = model_max_length(hf_tokenizer, torch_model.config)
    pad_token_id = hf_tokenizer.pad_token_id or 0
    backend = hf_tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length=max_length)
    backend.save(str(staging / "tokenizer.json"))
    shutil.copyfile(graph.path, staging / VARIANT_FILES["fp32"])
    return Source(graph=graph, torch_model=torch_model,
                   tokenizer=TextTokenizer(staging / "tokenizer.json", max_length, pad_token_id))


def fp32_variant(source: Source, staging: Path, options: BuildOptions) -> Candidate:
    """The exported graph, which must match PyTorch within ``atol`` or the build stops."""
    fp32 = OnnxModel(staging / VARIANT_FILES["fp32"], provider="cpu", threads=options.threads)
    check = compare_with_torch(fp32, source.torch_model, source.tokenizer)
    if check.max_abs_diff > options.atol or check.label_agreement < 1.0:
        raise ExportError(f"the exported ONNX graph does not match PyTorch: max |Δlogit| "
                          f"{check.max_abs_diff:.3g} (tolerance {options.atol:g}), label agreement "
                          f"{check.label_agreement:.2%} on {check.texts} probe texts")
    return Candidate(fp32, {"against": "pytorch", **check.as_dict(), "tolerance": options.atol, "passed": True})


def optimized_variant(source: Source, staging: Path, options: BuildOptions, progress: Progress) -> Candidate:
    """ONNX Runtime's transformer fusions, kept either way but eligible only if it matches PyTorch."""
    heads, hidden = attention_shape(source.torch_model.config)
    fused = optimize_graph(source.graph.path, staging / VARIANT_FILES["optimized"], heads, hidden)
    optimized = OnnxModel(fused.path, provider="cpu", threads=options.threads)
    check = compare_with_torch(optimized, source.torch_model, source.tokenizer)
    passed = check.max_abs_diff <= options.atol and check.label_agreement == 1.0
    if not passed:
        progress.echo(f"      warning: optimized variant differs from PyTorch by "
                      f"{check.max_abs_diff:.3g} > {options.atol:g}; it will not be the default")
    return Candidate(optimized, {"against": "pytorch", **check.as_dict(), "tolerance": options.atol,
                                  "passed": passed}, {"fused_ops": fused.fused_ops})


def int8_variant(source: Source, staging: Path, options: BuildOptions, fp32: OnnxModel,
                  eval_set: LabelledTexts | None) -> Candidate:
    """Dynamic int8 (:data:`~ortpipe.export.quantize.PORTABLE`) of the optimized graph (or fp32),
    gated on label agreement with fp32 at batch 1 and at batch 32: the worse of the two counts."""
    base = staging / (VARIANT_FILES["optimized"] if options.optimize else VARIANT_FILES["fp32"])
    settings = quantize_int8(base, staging / VARIANT_FILES["int8"], PORTABLE)
    int8 = OnnxModel(staging / VARIANT_FILES["int8"], provider="cpu", threads=options.threads)
    probe = list(PROBE_TEXTS) + (eval_set.texts if eval_set else [])
    checks = {size: compare_with_onnx(int8, fp32, source.tokenizer, probe, size) for size in (1, 32)}
    agreement = min(c.label_agreement for c in checks.values())
    return Candidate(int8, {"against": "fp32 onnx", "label_agreement": agreement,
                             "max_abs_diff": max(c.max_abs_diff for c in checks.values()),
                             "texts": len(probe), "batch_sizes": list(checks),
                             "by_batch_size": {str(size): {"label_agreement": c.label_agreement,
                                                           "max_abs_diff": c.max_abs_diff}
                                               for size, c in checks.items()},
                             "min_label_agreement": options.min_int8_agreement,
                             "passed": agreement >= options.min_int8_agreement},
                      {**settings, "quantized_from": base.name})


def fp16_variant(source: Source, staging: Path, options: BuildOptions, fp32: OnnxModel,
                  eval_set: LabelledTexts | None) -> Candidate:
    """The GPU fusions in float16 (fp32 inputs and outputs), for the CUDA provider.

    Validated here against fp32 when this machine has CUDA; else recorded as not
    yet validated, and the probe check on the first CUDA machine that loads it
    is its validation.
    """
    heads, hidden = attention_shape(source.torch_model.config)
    fused = optimize_graph(source.graph.path, staging / VARIANT_FILES["fp16"], heads, hidden, float16=True)
    details = {"precision": "float16", "io_types": "float32", "requires": "cuda", "fused_ops": fused.fused_ops}
    if not cuda_available():
        return Candidate(None, {"against": "fp32 onnx", "passed": False, "validated": False,
                                 "reason": "not yet validated: the export machine has no CUDA; the probe check "
                                           "on a CUDA machine validates it there",
                                 "min_label_agreement": FP16_MIN_AGREEMENT}, details)
    fp16 = OnnxModel(fused.path, provider="cuda")
    texts = list(PROBE_TEXTS) + (eval_set.texts if eval_set else [])
    check = compare_with_onnx(fp16, fp32, source.tokenizer, texts, 32)
    return Candidate(fp16, {"against": "fp32 onnx", "validated": True, "validated_with": "cuda",
                             **check.as_dict(), "min_label_agreement": FP16_MIN_AGREEMENT,
                             "passed": check.label_agreement >= FP16_MIN_AGREEMENT}, details)
