"""Probe texts with their fp32 reference logits: a variant re-checked on the machine that runs it.

A bundle stores ``probes.json`` (written at export): a few dozen texts, the
logits the fp32 graph gave them, and the logits each variant gave them on the
export machine. :func:`run_probes` runs a variant on them here, one text at a
time and in batches, and holds it to the gate the export recorded for it
(``validation["probe_gate"]``):

- label agreement with fp32 of at least ``min_agreement`` (the export gate);
- max |Δlogit| against fp32 no larger than ``max_abs_diff``;
- max drift from its own export-time logits no larger than ``max_drift``:
  a variant that computes other numbers here than where it was validated
  does not inherit that validation.

int8 kernels differ between CPUs (x86 without VNNI saturates where VNNI does
not), so a quantized variant validated on one machine may fail here; this is
how the runtime finds out before trusting it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ortpipe.runtime.errors import BundleError

PROBES_FILE = "probes.json"


def _rows(array: np.ndarray) -> list[list[float]]:
    return [[float(x) for x in row] for row in array]


@dataclass(frozen=True)
class ProbeSet:
    """Texts, their fp32 reference logits, the batch size of the batched pass, and
    each variant's own logits at export (``outputs[variant][str(batch_size)]``)."""

    texts: tuple[str, ...]
    logits: np.ndarray
    batch_size: int
    outputs: dict = field(default_factory=dict)

    def write(self, path: Path) -> None:
        data = {"reference": "fp32 onnx", "batch_size": self.batch_size, "texts": list(self.texts),
                "logits": _rows(self.logits),
                "outputs": {name: {size: _rows(v) for size, v in by_size.items()}
                            for name, by_size in self.outputs.items()}}
        Path(path).write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> "ProbeSet":
        """Raises BundleError naming what is wrong with the file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            texts, logits = data["texts"], np.asarray(data["logits"], dtype=np.float32)
            batch_size = int(data["batch_size"])
            outputs = {name: {size: np.asarray(v, dtype=np.float32) for size, v in by_size.items()}
                       for name, by_size in data.get("outputs", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"probe file {path} cannot be read: {exc}") from exc
        shapes_ok = all(v.shape == logits.shape for by_size in outputs.values() for v in by_size.values())
        if (not texts or not all(isinstance(t, str) for t in texts) or logits.ndim != 2
                or logits.shape[0] != len(texts) or batch_size < 1 or not shapes_ok):
            raise BundleError(f"probe file {path} is malformed: it needs one logit row per text")
        return cls(tuple(texts), logits, batch_size, outputs)


@dataclass(frozen=True)
class ProbeGate:
    """What a variant must achieve on the probes (see the module docstring)."""

    min_agreement: float
    max_abs_diff: float
    max_drift: float | None  # None: the variant never ran at export (fp16 without CUDA), nothing to drift from

    @classmethod
    def of(cls, validation: dict) -> "ProbeGate | None":
        gate = validation.get("probe_gate")
        if not gate:
            return None
        drift = gate.get("max_drift")
        try:
            values = (float(gate["min_agreement"]), float(gate["max_abs_diff"]), None if drift is None else float(drift))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"the manifest's probe gate {gate!r} is not three numbers ({exc})") from None
        if not all(math.isfinite(v) and v >= 0 for v in values if v is not None) or values[0] > 1:
            raise BundleError(f"the manifest's probe gate {gate!r} holds a value that is not a finite number in "
                              "range (a NaN gate would pass anything)")
        return cls(*values)


@dataclass(frozen=True)
class ProbeReport:
    """A variant's probe results on one machine, and whether it passed."""

    variant: str
    passed: bool
    reason: str
    agreement: float | None = None
    max_abs_diff: float | None = None
    drift: float | None = None
    by_batch_size: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)
    probe_ms: float | None = None
    machine_key: str = ""
    cached: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ProbeReport":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _logits(model, tokenizer, texts: Sequence[str], batch_size: int) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), batch_size):
        rows.append(model(tokenizer(list(texts[start:start + batch_size]))))
    return np.concatenate(rows)


def compare(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Label agreement and max |Δlogit| of ``logits`` against ``reference``."""
    return {"agreement": float((logits.argmax(-1) == reference.argmax(-1)).mean()),
            "max_abs_diff": float(np.abs(logits - reference).max())}


def probe_logits(model, tokenizer, probes: ProbeSet) -> dict[str, np.ndarray]:
    """The model's logits on the probes, one text at a time and in batches: ``{"1": …, "16": …}``."""
    return {str(size): _logits(model, tokenizer, probes.texts, size) for size in sorted({1, probes.batch_size})}


def run_probes(variant: str, model, tokenizer, probes: ProbeSet, gate: ProbeGate | None,
               machine_key: str = "") -> ProbeReport:
    """Run ``model`` on the probes alone and in batches of ``probes.batch_size``; judge by ``gate``."""
    start = time.perf_counter()
    outputs = probe_logits(model, tokenizer, probes)
    too_long = longest_input_problem(model, tokenizer)
    if too_long:
        return ProbeReport(variant, False, too_long, machine_key=machine_key)
    return judge(variant, outputs, probes, gate, (time.perf_counter() - start) * 1000, machine_key)


def longest_input_problem(model, tokenizer) -> str | None:
    """Why the model cannot take a text of the manifest's ``max_length`` tokens (None: it can).

    A manifest whose ``max_length`` passes the graph's position embeddings would fail only on long texts,
    deep inside ONNX Runtime; one call at that length finds it when the variant is checked.
    """
    encoded = tokenizer(["a " * (2 * tokenizer.max_length)], truncation=True)
    try:
        logits = model(encoded)
    except Exception as exc:  # ONNX Runtime raises its own exception types
        return (f"the model fails on a text of the manifest's max_length ({tokenizer.max_length} tokens): "
                f"{str(exc)[:200]}; is max_length beyond the model's positions?")
    return None if np.isfinite(logits).all() else "the model gives non-finite logits on its longest input"


def judge(variant: str, outputs: dict[str, np.ndarray], probes: ProbeSet, gate: ProbeGate | None,
          probe_ms: float | None = None, machine_key: str = "") -> ProbeReport:
    """Hold a variant's probe logits (from :func:`probe_logits`) to ``gate``."""
    by_batch = {size: compare(logits, probes.logits) for size, logits in outputs.items()}
    own = probes.outputs.get(variant, {})
    for size, logits in outputs.items():
        if size in own:
            by_batch[size]["drift"] = float(np.abs(logits - own[size]).max())
    agreement = min(r["agreement"] for r in by_batch.values())
    worst = max(r["max_abs_diff"] for r in by_batch.values())
    if not math.isfinite(worst):  # NaN or inf logits: no comparison below may pass them
        return ProbeReport(variant, False, "the model gives non-finite logits (NaN or inf) on the probe texts",
                           agreement, worst, None, by_batch, {} if gate is None else asdict(gate),
                           probe_ms, machine_key)
    drifts = [r["drift"] for r in by_batch.values() if "drift" in r]
    drift = max(drifts) if drifts else None
    if gate is None:
        passed, reason = False, f"the manifest records no probe gate for variant {variant!r}"
    elif agreement < gate.min_agreement:
        passed, reason = False, (f"label agreement with the fp32 reference is {agreement:.2%} on "
                                 f"{len(probes.texts)} probe texts, below the gate of {gate.min_agreement:.2%}")
    elif worst > gate.max_abs_diff:
        passed, reason = False, (f"max |Δlogit| against the fp32 reference is {worst:.3g}, above the "
                                 f"{gate.max_abs_diff:.3g} allowed from where it was validated")
    elif gate.max_drift is None:
        passed, reason = True, (f"agrees with fp32 on {agreement:.2%} of {len(probes.texts)} probe texts, "
                                f"max |Δlogit| {worst:.3g} ≤ {gate.max_abs_diff:.3g} (first validated here: "
                                f"it never ran where it was exported)")
    elif drift is None:
        passed, reason = False, f"the probe file holds no export-time logits of {variant!r} to compare with"
    elif drift > gate.max_drift:
        passed, reason = False, (f"it computes other numbers here than where it was validated (max drift "
                                 f"{drift:.3g} > {gate.max_drift:.3g}), so that validation does not carry over")
    else:
        passed, reason = True, (f"agrees with fp32 on {agreement:.2%} of {len(probes.texts)} probe texts, "
                                f"max |Δlogit| {worst:.3g} ≤ {gate.max_abs_diff:.3g}, drift from export "
                                f"{drift:.2g} ≤ {gate.max_drift:.2g}")
    return ProbeReport(variant, passed, reason, agreement, worst, drift, by_batch,
                       asdict(gate) if gate else {}, None if probe_ms is None else round(probe_ms, 2), machine_key)
