"""Build a bundle: export, validate, optimize, quantize, time, write the manifest.

    build_bundle("path/to/checkpoint", "bundles/my-model", BuildOptions(eval_data="test.tsv"))

Validation is fatal for the fp32 graph (max |Δlogit| above ``atol``). The
optimized and int8 variants are kept with their measurements either way, but
only a variant that passes its gate can become the default: the optimized one
must match PyTorch within ``atol``; int8 must agree with fp32 on the labels and,
with labelled data, stay within ``max_accuracy_drop`` of fp32's accuracy.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ortpipe.export.calibrate import CalibrationSettings, calibrate_bundle
from ortpipe.export.steps import Progress
from ortpipe.export.data import DataError, LabelledTexts, read_labelled_tsv
from ortpipe.export.variants import (VARIANT_FILES, Candidate, Source, export_source,
                                     fp16_variant, fp32_variant, int8_variant, optimized_variant)
from ortpipe.export.onnx_export import ExportError
from ortpipe.export.probing import probe_and_choose
from ortpipe.export.static_int8 import nncf_installed, static_int8_variant
from ortpipe.export.optimize import attention_shape
from ortpipe.export.validate import accuracy
from ortpipe.runtime.check import export_gate_summary
from ortpipe.runtime.manifest import Manifest, Variant, sha256_of
from ortpipe.runtime.probes import PROBES_FILE
from ortpipe.runtime.tokenize import TextTokenizer
from ortpipe.runtime.zero_shot import ZERO_SHOT, find_entailment
from ortpipe.runtime.versions import library_versions

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
    calibration_data: Path | None = None  # None: eval_data, when given (see ortpipe.export.calibrate)
    target_precision: float | None = None  # record the threshold for this precision (single-label models)
    static_int8: bool | None = None  # NNCF's static int8 for OpenVINO; None: when NNCF is installed
    quantize_data: Path | None = None  # the texts static int8 calibrates on (None: the eval data, else probes)


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
    eval_set, calibration = None, options.calibration_data or options.eval_data
    for data in (options.eval_data, calibration):  # refused before the export's minutes
        if data and not Path(data).is_file():
            raise DataError(f"labelled data file not found: {data}")
    _check_static_int8(options)
    steps = (4 + bool(options.optimize) + bool(options.quantize) + wants_static_int8(options) + options.fp16
             + bool(options.eval_data) + bool(calibration))
    progress = Progress(steps, echo)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-staging-", dir=out_dir.parent))
    try:
        progress.step(f"exporting {model} to ONNX with optimum")
        source = export_source(model, staging, options)
        if options.eval_data:  # read once the model's label names are known: labels may be ids or names
            eval_set = read_labelled_tsv(options.eval_data, limit=options.eval_limit,
                                         label2id={v: k for k, v in source.torch_model.config.id2label.items()})
        _check_window(options.window, source.tokenizer.max_length)
        variants = _build_variants(source, staging, options, progress, eval_set)
        progress.step("probing and timing the variants, choosing the default")
        default = probe_and_choose(variants, source, staging, options, eval_set)

        progress.step(f"writing the bundle to {out_dir}")
        manifest = _manifest(model, source, variants, default, staging, options)
        shutil.rmtree(staging / "optimum")
        manifest.write(staging)
        if calibration:
            progress.step(f"calibrating each variant on {Path(calibration).name}")
            manifest = _calibrated(staging, manifest, options, progress)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        _readable_by_others(staging)  # mkdtemp makes it drwx------: a service user must be able to read it
        staging.rename(out_dir)
        progress.finish()
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _calibrated(staging: Path, manifest: Manifest, options: BuildOptions, progress: Progress) -> Manifest:
    """The bundle calibrated on ``--calibration-data``, or on ``--eval-data`` when it has rows enough."""
    settings = CalibrationSettings(Path(options.calibration_data or options.eval_data), options.target_precision,
                                   threads=options.threads)
    try:
        return calibrate_bundle(staging, settings)
    except DataError as exc:
        if options.calibration_data:
            raise
        progress.echo(f"      not calibrated: {exc}")
        return manifest


def _readable_by_others(folder: Path) -> None:
    """The bundle folder as a plain ``mkdir`` would make it (0777 less the umask), its files left as written."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)


def _build_variants(source: Source, staging: Path, options: BuildOptions, progress: Progress,
                    eval_set: LabelledTexts | None) -> dict[str, Candidate]:
    """Every variant ``options`` ask for, validated, and scored on ``eval_set`` when there is one."""
    progress.step("validating fp32 ONNX against PyTorch (batch sizes 1, 3, 8)")
    variants = {"fp32": fp32_variant(source, staging, options)}
    if options.optimize:
        progress.step("optimizing with ONNX Runtime's transformer fusions")
        variants["optimized"] = optimized_variant(source, staging, options, progress)
    if options.quantize:
        progress.step("quantizing to dynamic int8")
        variants["int8"] = int8_variant(source, staging, options, variants["fp32"].model, eval_set)
    if wants_static_int8(options):
        progress.step("quantizing to static int8 with NNCF (for OpenVINO)")
        try:
            variants["static-int8"] = static_int8_variant(source, staging, options, variants["fp32"].model, eval_set)
        except ExportError as exc:
            if options.static_int8:  # asked for by name: its failure is the export's
                raise
            progress.echo(f"      no static-int8 variant: {exc}")
    if options.fp16:
        progress.step("converting the fused graph to float16 for CUDA")
        variants["fp16"] = fp16_variant(source, staging, options, variants["fp32"].model, eval_set)
    if eval_set is not None:
        progress.step(f"measuring accuracy on {len(eval_set)} labelled texts from {eval_set.path.name}")
        _score_accuracy(variants, source.tokenizer, eval_set, options.max_accuracy_drop)
    for name in _quantized(variants):
        if not variants[name].validation["passed"]:
            progress.echo(f"      warning: {name} {export_gate_summary(variants[name].validation)}; it is kept "
                          "but will not be the default")
    return variants


def _quantized(variants: dict[str, Candidate]) -> list[str]:
    """The quantized variants (int8, static-int8): those held to the int8 gates."""
    return [name for name, candidate in variants.items() if candidate.details.get("method")]


def wants_static_int8(options: BuildOptions) -> bool:
    """Whether to build static int8: asked for, or not refused (None), quantizing, and NNCF is installed."""
    return options.static_int8 is True or (options.static_int8 is None and bool(options.quantize)
                                           and nncf_installed())


def _check_static_int8(options: BuildOptions) -> None:
    """``--static-int8`` without NNCF is refused before the export's minutes."""
    if options.static_int8 and not nncf_installed():
        raise ExportError("--static-int8 needs NNCF: pip install 'ortpipe[openvino]'")


def _score_accuracy(variants: dict[str, Candidate], tokenizer: TextTokenizer, eval_set: LabelledTexts,
                    max_drop: float) -> None:
    """Record every variant's accuracy; a quantized one fails its gate if it loses more than ``max_drop``."""
    for candidate in variants.values():
        if candidate.model is None:
            continue
        candidate.validation["accuracy"] = round(
            accuracy(candidate.model, tokenizer, eval_set.texts, eval_set.labels), 5)
        candidate.validation["accuracy_data"] = f"{eval_set.path.name} ({len(eval_set)} rows)"
    for name in _quantized(variants):
        gated = variants[name].validation
        drop = variants["fp32"].validation["accuracy"] - gated["accuracy"]
        gated.update(accuracy_drop=round(drop, 5), max_accuracy_drop=max_drop)
        if drop > max_drop:
            gated["passed"] = False


def _check_window(window: int | None, max_length: int) -> None:
    """A recommended window must fit the model (``ortpipe export --window``)."""
    from ortpipe.runtime.windows import MIN_WINDOW

    if window is not None and not MIN_WINDOW <= window <= max_length:
        raise ExportError(f"--window {window} must be from {MIN_WINDOW} to the model's limit of {max_length} tokens")


def _manifest(model: str, source: Source, variants: dict[str, Candidate], default: str, staging: Path,
              options: BuildOptions) -> Manifest:
    """The bundle's self-description, with the sha256 of every file in ``staging``."""
    config = source.torch_model.config
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    entailment = find_entailment([id2label[i] for i in range(len(id2label))])
    return Manifest(
        source_model=options.source_name or model,
        model_type=config.model_type,
        problem_type=problem_type_of(config),
        id2label=id2label,
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
        library_versions={"python": sys.version.split()[0], **library_versions()},
        notes=options.notes,
        window=options.window,
        entailment_id=entailment,
        task="text-classification" if entailment is None else ZERO_SHOT,
    )
