"""``ortpipe calibrate``: fit each variant's temperature (and a threshold) on labelled data, into the manifest.

The data is split once, in file order: the first part fits, the last part (``held_out``, half by
default) only measures, so the ECE and log-loss the manifest records are on texts the fit never saw.
Each variant gets its own temperature: int8 logits are not fp32's. The variants' files are untouched
(their sha256 stays valid); the manifest is rewritten whole, atomically, with a note saying what data
calibrated it and when. Needs only the runtime (numpy, ONNX Runtime), not torch.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
from pathlib import Path

import numpy as np

from ortpipe.export.data import DataError, LabelledTexts, read_labelled_tsv
from ortpipe.export.validate import logits_in_batches
from ortpipe.runtime.bundle import open_bundle
from ortpipe.runtime.calibration import MIN_CALIBRATION_ROWS, figures, fit_temperature
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.manifest import MANIFEST_NAME, Manifest, read_manifest
from ortpipe.runtime.postprocess import apply_function, resolve_function
from ortpipe.runtime.selective import DEFAULT_DELTA, choose_threshold
from ortpipe.runtime.tokenize import TextTokenizer
from ortpipe.runtime.versions import library_versions

DEFAULT_HELD_OUT = 0.5
CPU_VARIANTS = ("fp32", "optimized", "int8")  # fp16 is for CUDA: calibrated where it runs, not here


@dataclasses.dataclass(frozen=True)
class CalibrationSettings:
    """What ``ortpipe calibrate`` was asked for."""

    data: Path
    target_precision: float | None = None
    delta: float = DEFAULT_DELTA
    held_out: float = DEFAULT_HELD_OUT
    threads: int | None = None

    def check(self) -> None:
        if self.target_precision is not None and not 0.5 <= self.target_precision < 1.0:
            raise InputError(f"--target-precision must be in [0.5, 1), got {self.target_precision}")
        if not 0.0 < self.delta < 1.0:
            raise InputError(f"--delta must be in (0, 1), got {self.delta}")
        if not 0.0 <= self.held_out < 1.0:
            raise InputError(f"--held-out must be in [0, 1), got {self.held_out}")


def calibrate_bundle(bundle_dir: str | Path, settings: CalibrationSettings) -> Manifest:
    """Fit and record the calibration of every CPU variant of the bundle in ``bundle_dir``."""
    settings.check()
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    function = resolve_function(None, manifest.problem_type, manifest.num_labels)
    if function == "none":
        raise InputError("a regression model has no probabilities to calibrate")
    if settings.target_precision is not None and function != "softmax":
        raise InputError("--target-precision chooses a threshold on the top label of a single-label (softmax) "
                         "model; for multi-label models give per-label thresholds at call time")
    data = _read(settings.data, manifest, function)
    fit_rows = len(data) - math.floor(len(data) * settings.held_out)
    if fit_rows < MIN_CALIBRATION_ROWS:
        raise DataError(f"{settings.data}: {fit_rows} rows to fit on (of {len(data)}, --held-out "
                        f"{settings.held_out}); calibration needs at least {MIN_CALIBRATION_ROWS}")
    records = {}
    for name in manifest.variants:
        if name in CPU_VARIANTS:
            logits = _logits(bundle_dir, name, data.texts, settings.threads)
            records[name] = _record(logits, data, fit_rows, function, settings)
    if "fp16" in manifest.variants:  # fp16 (CUDA) is checked against fp32 within tolerance: it takes fp32's fit
        records["fp16"] = {**records.get("optimized", records.get("fp32", {})), "fitted_on_variant": "optimized"
                           if "optimized" in records else "fp32"}
    variants = {name: dataclasses.replace(v, calibration=records.get(name, v.calibration))
                for name, v in manifest.variants.items()}
    note = (f"calibrated with ortpipe {library_versions(('ortpipe',)).get('ortpipe', '?')} on {datetime.date.today().isoformat()}: "
            f"{settings.data.name}, first {fit_rows} of {len(data)} rows fitted, the rest held out")
    updated = dataclasses.replace(manifest, variants=variants, notes=manifest.notes + (note,))
    _write_atomically(bundle_dir, updated)
    return updated


def _read(path: Path, manifest: Manifest, function: str) -> LabelledTexts:
    label2id = {name: index for index, name in manifest.id2label.items()}
    multi = function == "sigmoid" and manifest.num_labels > 1
    data = read_labelled_tsv(path, label2id=label2id, multi_label=multi)
    flat = [label for labels in data.labels for label in labels] if multi else data.labels
    unknown = sorted({label for label in flat if not 0 <= label < max(2, manifest.num_labels)})
    if unknown:
        raise DataError(f"{path}: label id(s) {unknown} are not the model's; its labels are {manifest.labels}")
    if function == "softmax":
        return data
    matrix = np.zeros((len(data), manifest.num_labels), dtype=np.float32)  # sigmoid: one 0/1 column per label
    for row, labels in enumerate(data.labels):
        matrix[row, labels if multi else 0] = 1.0 if multi else float(labels)
    return dataclasses.replace(data, labels=matrix)


def _logits(bundle_dir: Path, variant: str, texts: list[str], threads: int | None) -> np.ndarray:
    """The variant's logits, one text per call: what a call sees by default, whatever the batch."""
    bundle = open_bundle(bundle_dir, variant)
    tokenizer = TextTokenizer(bundle.tokenizer_path, bundle.manifest.max_length, bundle.manifest.pad_token_id)
    model = OnnxModel(bundle.model_path, provider="cpu", threads=threads)
    return logits_in_batches(model, tokenizer, texts, batch_size=1)


def _record(logits: np.ndarray, data: LabelledTexts, fit_rows: int, function: str,
            settings: CalibrationSettings) -> dict:
    labels = np.asarray(data.labels)
    fit, held = slice(0, fit_rows), slice(fit_rows, None)
    temperature = fit_temperature(logits[fit], labels[fit], function)
    record = {"method": "temperature", "temperature": _rounded(temperature),
              "data": settings.data.name, "fit": figures(logits[fit], labels[fit], function, temperature),
              "held_out": figures(logits[held], labels[held], function, temperature) if fit_rows < len(labels)
              else None, "threshold": None}
    if settings.target_precision is not None:
        scores = apply_function(logits[fit] / temperature, function)
        chosen = choose_threshold(scores.max(axis=1), scores.argmax(axis=1) == labels[fit],
                                  settings.target_precision, settings.delta)
        if chosen is not None:
            record["threshold"] = {**chosen.as_record(), **_answered(logits[held], labels[held], temperature,
                                                                      chosen.value)}
        else:
            record["threshold_refused"] = (f"no threshold answering at least half of the {fit_rows} fitted rows "
                                           f"reaches precision {settings.target_precision} with confidence "
                                           f"{1 - settings.delta:g}: more calibration data is needed")
    return record


def _rounded(temperature) -> float | list[float]:
    values = [round(float(t), 4) for t in np.atleast_1d(temperature)]
    return values if np.ndim(temperature) else values[0]


def _answered(logits: np.ndarray, labels: np.ndarray, temperature, threshold: float) -> dict:
    """Coverage and precision of a threshold on the held-out rows."""
    if not len(labels):
        return {}
    scores = apply_function(logits / temperature, "softmax")
    answered = scores.max(axis=1) >= threshold
    right = scores.argmax(axis=1) == labels
    return {"held_out_coverage": round(float(answered.mean()), 4),
            "held_out_precision": round(float(right[answered].mean()), 4) if answered.any() else None}


def _write_atomically(bundle_dir: Path, manifest: Manifest) -> None:
    temporary = bundle_dir / f".{MANIFEST_NAME}.tmp"
    temporary.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(temporary, bundle_dir / MANIFEST_NAME)
