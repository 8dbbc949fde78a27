"""Probe and time every variant of a bundle being built, write the probe file, choose the default."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ortpipe.export.validate import PROBE_TEXTS
from ortpipe.export.variants import FP16_PROBE_MAX_ABS_DIFF, Candidate, Source
from ortpipe.export.data import LabelledTexts
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.machine import describe_machine
from ortpipe.runtime.probes import PROBES_FILE, ProbeGate, ProbeSet, judge, probe_logits
from ortpipe.runtime.timing import median_ms
from ortpipe.runtime.tokenize import TextTokenizer

if TYPE_CHECKING:
    from ortpipe.export.bundle import BuildOptions

# The probes every machine runs at load: 16 texts of at most 32 tokens (up to 8 spread over the eval
# set, then the built-in ones), one at a time and as one batch; about 60 ms for int8 on a 2-core Zen 4.
PROBE_COUNT = 16
PROBE_EVAL_TEXTS = 8
PROBE_MAX_TOKENS = 32


def _timings(model: OnnxModel, tokenizer: TextTokenizer) -> dict:
    one, eight = tokenizer(list(PROBE_TEXTS[:1])), tokenizer(list(PROBE_TEXTS[:8]))
    return {"single_sentence_ms": median_ms(lambda: model(one), 30),
            "batch8_ms": median_ms(lambda: model(eight), 10)}


def probe_and_choose(variants: dict[str, Candidate], source: Source, staging: Path, options: BuildOptions,
                      eval_set: LabelledTexts | None) -> str:
    """Probe and time every variant, write the probe file; the default: the fastest that passed."""
    probes = _probe_set(source, variants["fp32"].model, eval_set)
    machine = describe_machine()
    for name, candidate in variants.items():
        _record_probes(name, candidate, source.tokenizer, probes, options)
        if candidate.model is not None and candidate.model.provider == "cpu":
            candidate.timing = _timings(candidate.model, source.tokenizer)
        candidate.machine = machine
    probes.write(staging / PROBES_FILE)
    # the manifest's default is the CPU one; on CUDA, load() prefers fp16 once it passes its probes there
    # (a variant timed on OpenVINO is not eligible: load() without a backend runs ONNX Runtime)
    eligible = [name for name, candidate in variants.items() if candidate.validation["passed"] and candidate.timing
                and candidate.model.backend == "onnxruntime"]
    return min(eligible, key=lambda name: variants[name].timing["single_sentence_ms"])


def _probe_set(source: Source, fp32: OnnxModel, eval_set: LabelledTexts | None) -> ProbeSet:
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


def _record_probes(name: str, candidate: Candidate, tokenizer: TextTokenizer, probes: ProbeSet,
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


