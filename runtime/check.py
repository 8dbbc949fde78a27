"""Trust a variant only after it passed its probes on this machine; cache the verdict.

``TextClassifier.load`` with no variant asks :func:`check_variant` about the
manifest's default when that default is quantized (int8 kernels differ
between CPUs). A pass keeps it; a failure falls back to :func:`best_float_variant`
with one warning. Reports are cached per bundle (its manifest's sha256) and
machine (:func:`~ortpipe.runtime.machine.machine_key`) under
``$ORTPIPE_HOME/checks``, so the probes run once per machine, not per load.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from ortpipe.runtime.bundle import Bundle, ortpipe_home
from ortpipe.runtime.machine import machine_key
from ortpipe.runtime.manifest import Manifest
from ortpipe.runtime.probes import ProbeGate, ProbeReport, ProbeSet, run_probes
from ortpipe.runtime.providers import cuda_available

log = logging.getLogger("ortpipe")


def cache_file(bundle: Bundle, key: str) -> Path:
    """Where the probe reports of ``bundle`` on the machine ``key`` are kept."""
    return ortpipe_home() / "checks" / f"{bundle.manifest_sha256[:16]}-{key}.json"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, variant: str, report: ProbeReport) -> None:
    """Add one report to the cache file, atomically; a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[variant] = report.as_dict()
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".check-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
        os.replace(temporary, path)
    except OSError as exc:
        log.debug("ortpipe: probe report not cached in %s: %s", path, exc)


def check_variant(bundle: Bundle, model, tokenizer, refresh: bool = False) -> ProbeReport:
    """The probe report of ``bundle.variant`` run by ``model`` on this machine.

    Args:
        model: the variant's :class:`~ortpipe.runtime.inference.OnnxModel`.
        tokenizer: the bundle's :class:`~ortpipe.runtime.tokenize.TextTokenizer`.
        refresh: run the probes even when a cached report exists.
    """
    variant = bundle.variant
    key = machine_key(provider=getattr(model, "engine_key", model.provider))  # OpenVINO: its own kernels
    if bundle.probes_path is None:
        return ProbeReport(variant.name, False, "the bundle stores no probe texts (it was exported by an "
                           "older ortpipe); re-export it to let this machine check it", machine_key=key)
    path = cache_file(bundle, key)
    if not refresh:
        cached = _read_cache(path).get(variant.name)
        if cached:
            return ProbeReport.from_dict({**cached, "cached": True})
    report = run_probes(variant.name, model, tokenizer, ProbeSet.read(bundle.probes_path),
                        ProbeGate.of(variant.validation), key)
    _write_cache(path, variant.name, report)
    return report


def best_float_variant(manifest: Manifest) -> str:
    """The fastest float variant that passed its export validation (``fp32`` when none was timed)."""
    floats = [v for v in manifest.variants.values()
              if not v.quantized and v.name != "fp16" and v.validation.get("passed", True)]
    if not floats:
        return "fp32"
    return min(floats, key=lambda v: v.details.get("timing_cpu", {}).get("single_sentence_ms", float("inf"))).name


def choose_variant(manifest: Manifest, default_report: ProbeReport | None) -> tuple[str, str]:
    """The variant ``load()`` settles on, and why, given the default's probe report (None: not checked)."""
    default = manifest.default_variant
    if default_report is None:
        return default, (f"{default!r} is the manifest's default; the bundle has no probe texts to check it "
                         "against here")
    if default_report.passed:
        return default, f"{default!r} is the manifest's default and passed its probe check here: {default_report.reason}"
    fallback = best_float_variant(manifest)
    if fallback == default or not manifest.variants[default].quantized:
        return None, (f"nothing: the default {default!r} is a float variant and failed its probe check here "
                      f"({default_report.reason}); its file does not compute what the bundle recorded at export")
    return fallback, (f"the default {default!r} failed its probe check here ({default_report.reason}); "
                      f"{fallback!r} is the fastest float variant")


def refused_message(bundle: Bundle, report: ProbeReport) -> str:
    """Why ``load()`` refuses a bundle whose chosen variant failed its probes (a replaced or broken file)."""
    return (f"bundle {bundle.path}: variant {report.variant!r} failed its probe check here ({report.reason}); "
            "its model file does not compute what the bundle's probes recorded at export (replaced or "
            f"damaged?). Re-export the bundle, or run `ortpipe doctor --bundle {bundle.path}`")


def wants_fp16(manifest: Manifest, provider: str) -> bool:
    """Whether ``load()`` should try the fp16 variant: the bundle has one and CUDA may be used here."""
    return "fp16" in manifest.variants and provider in ("auto", "cuda") and cuda_available()


def choose_cuda_variant(manifest: Manifest, fp16_report: ProbeReport) -> tuple[str, str]:
    """On CUDA: fp16 once it passed its probes here, else the fastest float variant (int8 is a CPU format)."""
    if fp16_report.passed:
        return "fp16", f"'fp16' passed its probe check on this CUDA device: {fp16_report.reason}"
    fallback = best_float_variant(manifest)
    return fallback, (f"'fp16' failed its probe check on this CUDA device ({fp16_report.reason}); "
                      f"{fallback!r} is the fastest float variant")


def needs_check(bundle: Bundle) -> bool:
    """Whether the chosen variant computes differently from CPU to CPU (quantized ones do)."""
    return bundle.variant.quantized


def export_gate_summary(validation: dict) -> str | None:
    """What a quantized variant's export gate measured, with its limits (None when it recorded no gate).

    The one wording ``ortpipe export`` prints and ``ortpipe doctor`` shows beside its own probe check.
    """
    if "min_label_agreement" not in validation or "label_agreement" not in validation:
        return None
    parts = [f"label agreement with fp32 {validation['label_agreement']:.2%} (gate ≥ "
             f"{validation['min_label_agreement']:.2%}) on {validation.get('texts', '?')} texts"]
    if "accuracy_drop" in validation:
        parts.append(f"accuracy {-validation['accuracy_drop'] * 100:+.2f} points against fp32 (gate: at most "
                     f"{validation['max_accuracy_drop'] * 100:.2f} below) on {validation.get('accuracy_data', '?')}")
    return f"{'passed' if validation.get('passed') else 'FAILED'} at export: " + "; ".join(parts)


def fallback_message(bundle: Bundle, report: ProbeReport, fallback: str, cpu: str) -> str:
    """The one warning ``load()`` logs when it replaces the default variant."""
    return (f"ortpipe: bundle {bundle.path}: the default variant {report.variant!r} failed its probe check "
            f"on this machine ({cpu}): {report.reason}. Using {fallback!r} instead; pass "
            f"variant={report.variant!r} to load it anyway, or run `ortpipe doctor --bundle {bundle.path}`.")
