"""Build a bundle: export, validate, optimize, quantize, time, write the manifest.

    from ortpipe.export.bundle import build_bundle
    build_bundle("path/to/checkpoint", "bundles/my-model", optimize=True, quantize="int8")

Validation is fatal for the fp32 graph (max |Δlogit| above ``atol``). The
optimized and int8 variants are kept with their measurements either way, but
only a variant that passes its gate can become the default: the optimized one
must match PyTorch within ``atol``; int8 must agree with fp32 on the labels and,
with labelled data, stay within ``max_accuracy_drop`` of fp32's accuracy.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ortpipe.export.data import LabelledTexts, read_labelled_tsv
from ortpipe.export.onnx_export import ExportedGraph, ExportError, export_onnx, resolve_model
from ortpipe.export.optimize import attention_shape, optimize_graph
from ortpipe.export.quantize import PORTABLE, quantize_int8
from ortpipe.export.validate import PROBE_TEXTS, accuracy, compare_with_onnx, compare_with_torch
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.machine import describe_machine
from ortpipe.runtime.manifest import Manifest, Variant, sha256_of
from ortpipe.runtime.probes import PROBES_FILE, ProbeGate, ProbeSet, judge, probe_logits
from ortpipe.runtime.providers import cuda_available
from ortpipe.runtime.timing import median_ms
from ortpipe.runtime.tokenize import TextTokenizer
from ortpipe.runtime.versions import library_versions

VARIANT_FILES = {"fp32": "model.onnx", "optimized": "model.optimized.onnx", "int8": "model.int8.onnx",
                 "fp16": "model.fp16.onnx"}
# fp16 logits differ from fp32 by a few 1e-3 (measured on MiniLM: see docs/gpu.md); the probe gate allows
# 0.05, and the export gate, where CUDA is at hand, asks the labels to agree on 99.5 % of the texts
FP16_PROBE_MAX_ABS_DIFF = 0.05
FP16_MIN_AGREEMENT = 0.995
# The probes every machine runs at load: 16 texts of at most 32 tokens (up to 8 spread over the eval
# set, then the built-in ones), one at a time and as one batch; about 60 ms for int8 on a 2-core Zen 4.
PROBE_COUNT = 16
PROBE_EVAL_TEXTS = 8
PROBE_MAX_TOKENS = 32
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text")


@dataclass(frozen=True)
class BuildOptions:
    """What to build and how strictly to check it."""

    optimize: bool = True
    quantize: str | None = "int8"
    atol: float = 1e-4
    min_int8_agreement: float = 0.98
    max_accuracy_drop: float = 0.007
    eval_data: Path | None = None
    eval_limit: int | None = None
    fp16: bool = True
    opset: int | None = None
    threads: int | None = None
    notes: tuple[str, ...] = ()
    source_name: str | None = None
    window: int | None = None  # the recommended window for long texts, recorded in the manifest


class Progress:
    """Numbered step lines on stderr with the time each step took."""

    def __init__(self, total: int, echo: Callable[[str], None] | None = None):
        self.total, self.done, self.started = total, 0, None
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))

    def step(self, what: str) -> None:
        self.finish()
        self.done += 1
        self.started = time.perf_counter()
        self.echo(f"[{self.done}/{self.total}] {what} ...")

    def finish(self) -> None:
        if self.started is not None:
            self.echo(f"      done in {time.perf_counter() - self.started:.1f}s")
            self.started = None


def model_max_length(tokenizer, config) -> int:
    """The longest input the model takes: tokenizer limit capped by the position table."""
    limit = config.max_position_embeddings
    if config.model_type in ROBERTA_LIKE:
        limit -= (config.pad_token_id or 0) + 1
    tokenizer_limit = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, tokenizer_limit))


def architecture_of(config) -> dict[str, int]:
    """Layer count and sizes, for FLOP counts (BERT and DistilBERT names)."""
    heads, hidden = attention_shape(config)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", 0)
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", 0)
    return {"layers": int(layers), "hidden_size": hidden, "heads": heads, "intermediate_size": int(intermediate),
            "num_labels": int(config.num_labels)}


def problem_type_of(config) -> str:
    if config.problem_type:
        return config.problem_type
    return "regression" if config.num_labels == 1 else "single_label_classification"


def _timings(model: OnnxModel, tokenizer: TextTokenizer) -> dict:
    one, eight = tokenizer(list(PROBE_TEXTS[:1])), tokenizer(list(PROBE_TEXTS[:8]))
    return {"single_sentence_ms": median_ms(lambda: model(one), 30),
            "batch8_ms": median_ms(lambda: model(eight), 10)}


def _library_versions() -> dict[str, str]:
    return {"python": sys.version.split()[0], **library_versions()}


def build_bundle(model: str, out_dir: str | Path, options: BuildOptions = BuildOptions(),
                 echo: Callable[[str], None] | None = None) -> Manifest:
    """Export ``model`` (a checkpoint folder or hub id) into the bundle folder ``out_dir``.

    Returns the manifest written to ``out_dir/ortpipe.json``.

    Raises:
        ExportError: export failed, or the fp32 graph differs from PyTorch beyond ``atol``.
    """
    out_dir = Path(out_dir)
    if options.quantize not in (None, "int8"):
        raise ExportError(f"quantization {options.quantize!r} is not supported; use 'int8'")
    eval_set = read_labelled_tsv(options.eval_data, limit=options.eval_limit) if options.eval_data else None
    steps = 4 + bool(options.optimize) + bool(options.quantize) + options.fp16 + (eval_set is not None)
    progress = Progress(steps, echo)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-staging-", dir=out_dir.parent))
    try:
        progress.step(f"exporting {model} to ONNX with optimum")
        source = _export_source(model, staging, options)

        _check_window(options.window, source.tokenizer.max_length)
        progress.step("validating fp32 ONNX against PyTorch (batch sizes 1, 3, 8)")
        variants = {"fp32": _fp32_variant(source, staging, options)}
        if options.optimize:
            progress.step("optimizing with ONNX Runtime's transformer fusions")
            variants["optimized"] = _optimized_variant(source, staging, options, progress)
        if options.quantize:
            progress.step("quantizing to dynamic int8")
            variants["int8"] = _int8_variant(source, staging, options, variants["fp32"].model, eval_set)
        if options.fp16:
            progress.step("converting the fused graph to float16 for CUDA")
            variants["fp16"] = _fp16_variant(source, staging, options, variants["fp32"].model, eval_set)
        if eval_set is not None:
            progress.step(f"measuring accuracy on {len(eval_set)} labelled texts from {eval_set.path.name}")
            _score_accuracy(variants, source.tokenizer, eval_set, options.max_accuracy_drop)
        if "int8" in variants and not variants["int8"].validation["passed"]:
            progress.echo("      warning: int8 variant failed its agreement/accuracy gate; "
                          "it is kept but will not be the default")

        progress.step("probing and timing the variants, choosing the default")
        probes = _probe_set(source, variants["fp32"].model, eval_set)
        machine = describe_machine()
        for name, candidate in variants.items():
            _record_probes(name, candidate, source.tokenizer, probes, options)
            if candidate.model is not None and candidate.model.provider == "cpu":
                candidate.timing = _timings(candidate.model, source.tokenizer)
            candidate.machine = machine
        probes.write(staging / PROBES_FILE)
        # the manifest's default is the CPU one; on CUDA, load() prefers fp16 once it passes its probes there
        eligible = [name for name, candidate in variants.items()
                    if candidate.validation["passed"] and candidate.timing]
        default = min(eligible, key=lambda name: variants[name].timing["single_sentence_ms"])

        progress.step(f"writing the bundle to {out_dir}")
        manifest = _manifest(model, source, variants, default, staging, options)
        shutil.rmtree(staging / "optimum")
        manifest.write(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        progress.finish()
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@dataclass
class _Source:
    """The exported graph and what it came from: the PyTorch model and the bundle's tokenizer."""

    graph: ExportedGraph
    torch_model: object
    tokenizer: TextTokenizer


@dataclass
class _Candidate:
    """One variant while the bundle is being built: its session, checks and timings."""

    model: OnnxModel | None  # None: a variant this machine cannot run (fp16 without CUDA)
    validation: dict
    details: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)


def _export_source(model: str, staging: Path, options: BuildOptions) -> _Source:
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
    return _Source(graph=graph, torch_model=torch_model,
                   tokenizer=TextTokenizer(staging / "tokenizer.json", max_length, pad_token_id))


def _fp32_variant(source: _Source, staging: Path, options: BuildOptions) -> _Candidate:
    """The exported graph, which must match PyTorch within ``atol`` or the build stops."""
    fp32 = OnnxModel(staging / VARIANT_FILES["fp32"], provider="cpu", threads=options.threads)
    check = compare_with_torch(fp32, source.torch_model, source.tokenizer)
    if check.max_abs_diff > options.atol or check.label_agreement < 1.0:
        raise ExportError(f"the exported ONNX graph does not match PyTorch: max |Δlogit| "
                          f"{check.max_abs_diff:.3g} (tolerance {options.atol:g}), label agreement "
                          f"{check.label_agreement:.2%} on {check.texts} probe texts")
    return _Candidate(fp32, {"against": "pytorch", **check.as_dict(), "tolerance": options.atol, "passed": True})


def _optimized_variant(source: _Source, staging: Path, options: BuildOptions, progress: Progress) -> _Candidate:
    """ONNX Runtime's transformer fusions, kept either way but eligible only if it matches PyTorch."""
    heads, hidden = attention_shape(source.torch_model.config)
    fused = optimize_graph(source.graph.path, staging / VARIANT_FILES["optimized"], heads, hidden)
    optimized = OnnxModel(fused.path, provider="cpu", threads=options.threads)
    check = compare_with_torch(optimized, source.torch_model, source.tokenizer)
    passed = check.max_abs_diff <= options.atol and check.label_agreement == 1.0
    if not passed:
        progress.echo(f"      warning: optimized variant differs from PyTorch by "
                      f"{check.max_abs_diff:.3g} > {options.atol:g}; it will not be the default")
    return _Candidate(optimized, {"against": "pytorch", **check.as_dict(), "tolerance": options.atol,
                                  "passed": passed}, {"fused_ops": fused.fused_ops})


def _int8_variant(source: _Source, staging: Path, options: BuildOptions, fp32: OnnxModel,
                  eval_set: LabelledTexts | None) -> _Candidate:
    """Dynamic int8 (:data:`~ortpipe.export.quantize.PORTABLE`) of the optimized graph (or fp32),
    gated on label agreement with fp32 at batch 1 and at batch 32: the worse of the two counts."""
    base = staging / (VARIANT_FILES["optimized"] if options.optimize else VARIANT_FILES["fp32"])
    settings = quantize_int8(base, staging / VARIANT_FILES["int8"], PORTABLE)
    int8 = OnnxModel(staging / VARIANT_FILES["int8"], provider="cpu", threads=options.threads)
    probe = list(PROBE_TEXTS) + (eval_set.texts if eval_set else [])
    checks = {size: compare_with_onnx(int8, fp32, source.tokenizer, probe, size) for size in (1, 32)}
    agreement = min(c.label_agreement for c in checks.values())
    return _Candidate(int8, {"against": "fp32 onnx", "label_agreement": agreement,
                             "max_abs_diff": max(c.max_abs_diff for c in checks.values()),
                             "texts": len(probe), "batch_sizes": list(checks),
                             "by_batch_size": {str(size): {"label_agreement": c.label_agreement,
                                                           "max_abs_diff": c.max_abs_diff}
                                               for size, c in checks.items()},
                             "min_label_agreement": options.min_int8_agreement,
                             "passed": agreement >= options.min_int8_agreement},
                      {**settings, "quantized_from": base.name})


def _fp16_variant(source: _Source, staging: Path, options: BuildOptions, fp32: OnnxModel,
                  eval_set: LabelledTexts | None) -> _Candidate:
    """The GPU fusions in float16 (fp32 inputs and outputs), for the CUDA provider.

    Validated here against fp32 when this machine has CUDA; else recorded as not
    yet validated, and the probe check on the first CUDA machine that loads it
    is its validation.
    """
    heads, hidden = attention_shape(source.torch_model.config)
    fused = optimize_graph(source.graph.path, staging / VARIANT_FILES["fp16"], heads, hidden, float16=True)
    details = {"precision": "float16", "io_types": "float32", "requires": "cuda", "fused_ops": fused.fused_ops}
    if not cuda_available():
        return _Candidate(None, {"against": "fp32 onnx", "passed": False, "validated": False,
                                 "reason": "not yet validated: the export machine has no CUDA; the probe check "
                                           "on a CUDA machine validates it there",
                                 "min_label_agreement": FP16_MIN_AGREEMENT}, details)
    fp16 = OnnxModel(fused.path, provider="cuda")
    texts = list(PROBE_TEXTS) + (eval_set.texts if eval_set else [])
    check = compare_with_onnx(fp16, fp32, source.tokenizer, texts, 32)
    return _Candidate(fp16, {"against": "fp32 onnx", "validated": True, "validated_with": "cuda",
                             **check.as_dict(), "min_label_agreement": FP16_MIN_AGREEMENT,
                             "passed": check.label_agreement >= FP16_MIN_AGREEMENT}, details)


def _probe_set(source: _Source, fp32: OnnxModel, eval_set: LabelledTexts | None) -> ProbeSet:
    """The probe texts (a spread of the eval set, then the built-in ones; short ones only, so the
    check stays cheap) with their fp32 logits."""
    texts = []
    if eval_set is not None:
        step = max(1, len(eval_set) // PROBE_EVAL_TEXTS)
        texts += [t for t in eval_set.texts[::step] if t.strip()][:PROBE_EVAL_TEXTS]
    texts += PROBE_TEXTS
    lengths = [len(e.ids) for e in source.tokenizer.encode(texts)]
    texts = [t for t, n in zip(texts, lengths) if n <= PROBE_MAX_TOKENS][:PROBE_COUNT]
    return ProbeSet(tuple(texts), fp32(source.tokenizer(texts)), batch_size=len(texts))


def _record_probes(name: str, candidate: _Candidate, tokenizer: TextTokenizer, probes: ProbeSet,
                   options: BuildOptions) -> None:
    """Run the probes here, keep the variant's logits in ``probes`` and its gate in the manifest.

    Elsewhere a variant must agree with fp32 on the probes' labels as often as
    the int8 gate asks, or as it does here if that is less (32 probes: one
    near-tie flipped here must not fail it everywhere). A float variant may
    differ from fp32 by ten times ``atol``. A quantized one may differ from fp32
    by 1.5× what it does here plus 0.05, and drift from its own logits here by
    0.05: measured, the portable int8 drifts by 0.0025 between an AVX-512 VNNI
    and an AVX2-only CPU, the 8-bit one by 0.38.
    """
    if candidate.model is None:  # fp16 without CUDA: a gate without drift, nothing measured here
        candidate.validation["probe_gate"] = asdict(ProbeGate(options.min_int8_agreement,
                                                              FP16_PROBE_MAX_ABS_DIFF, None))
        return
    probes.outputs[name] = probe_logits(candidate.model, tokenizer, probes)
    measured = judge(name, probes.outputs[name], probes, None)
    min_agreement = min(options.min_int8_agreement, measured.agreement)
    if candidate.details.get("precision") == "float16":
        gate = ProbeGate(min_agreement, max(FP16_PROBE_MAX_ABS_DIFF, 2 * measured.max_abs_diff), 0.05)
    elif candidate.details.get("method"):
        gate = ProbeGate(min_agreement, round(1.5 * measured.max_abs_diff + 0.05, 4), 0.05)
    else:
        gate = ProbeGate(min_agreement, max(10 * options.atol, 2 * measured.max_abs_diff), 10 * options.atol)
    candidate.validation["probe"] = {"texts": len(probes.texts), "agreement": measured.agreement,
                                     "max_abs_diff": measured.max_abs_diff, "by_batch_size": measured.by_batch_size}
    candidate.validation["probe_gate"] = asdict(gate)


def _score_accuracy(variants: dict[str, _Candidate], tokenizer: TextTokenizer, eval_set: LabelledTexts,
                    max_drop: float) -> None:
    """Record every variant's accuracy; int8 fails its gate if it loses more than ``max_drop``."""
    for candidate in variants.values():
        if candidate.model is None:
            continue
        candidate.validation["accuracy"] = round(
            accuracy(candidate.model, tokenizer, eval_set.texts, eval_set.labels), 5)
        candidate.validation["accuracy_data"] = f"{eval_set.path.name} ({len(eval_set)} rows)"
    if "int8" in variants:
        int8 = variants["int8"].validation
        drop = variants["fp32"].validation["accuracy"] - int8["accuracy"]
        int8.update(accuracy_drop=round(drop, 5), max_accuracy_drop=max_drop)
        if drop > max_drop:
            int8["passed"] = False


def _check_window(window: int | None, max_length: int) -> None:
    """A recommended window must fit the model (``ortpipe export --window``)."""
    from ortpipe.runtime.windows import MIN_WINDOW

    if window is not None and not MIN_WINDOW <= window <= max_length:
        raise ExportError(f"--window {window} must be from {MIN_WINDOW} to the model's limit of {max_length} tokens")


def _manifest(model: str, source: _Source, variants: dict[str, _Candidate], default: str, staging: Path,
              options: BuildOptions) -> Manifest:
    """The bundle's self-description, with the sha256 of every file in ``staging``."""
    config = source.torch_model.config
    return Manifest(
        source_model=options.source_name or model,
        model_type=config.model_type,
        problem_type=problem_type_of(config),
        id2label={int(k): str(v) for k, v in config.id2label.items()},
        max_length=source.tokenizer.max_length,
        input_names=source.graph.input_names,
        opset=source.graph.opset,
        default_variant=default,
        variants={name: Variant(name=name, file=VARIANT_FILES[name],
                                sha256=sha256_of(staging / VARIANT_FILES[name]),
                                validation=candidate.validation,
                                details={**candidate.details, "timing_cpu": candidate.timing,
                                         "timing_threads": options.threads},
                                machine=candidate.machine)
                  for name, candidate in variants.items()},
        pad_token_id=source.tokenizer.pad_token_id,
        tokenizer_sha256=sha256_of(staging / "tokenizer.json"),
        probes_file=PROBES_FILE,
        probes_sha256=sha256_of(staging / PROBES_FILE),
        architecture=architecture_of(config),
        library_versions=_library_versions(),
        notes=options.notes,
        window=options.window,
    )
