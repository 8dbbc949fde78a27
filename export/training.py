"""The training loop of :func:`~ortpipe.export.finetune.finetune`: data, model, steps, evaluations, checkpoints.

A :class:`Run` resumes exactly where it stopped: the step, the optimizer and scheduler, the weight average,
torch's random state and the batch order all come back from ``WORK/checkpoint``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from ortpipe.export.data import LabelledTexts, read_labelled_tsv
from ortpipe.export.default_model import ID2LABEL
from ortpipe.export import finetune as recipe  # its evaluate_accuracy looked up at each call (tests stop a run there)
from ortpipe.export.finetune import (FinetuneConfig, _collate, _encode, _length_bucketed_batches,
                                     _trainable_state, _weight_average)

log = logging.getLogger("ortpipe.export.finetune")


@dataclass
class SplitData:
    """The three splits and their token ids (test at the model's full length)."""

    base: Path
    train: LabelledTexts
    validation: LabelledTexts
    test: LabelledTexts
    train_ids: list
    validation_ids: list
    test_ids: list

    @classmethod
    def read(cls, data_dir: Path, base: Path, max_length: int) -> "SplitData":
        from transformers import AutoTokenizer

        train = read_labelled_tsv(data_dir / "train.tsv")
        validation = read_labelled_tsv(data_dir / "validation.tsv")
        test = read_labelled_tsv(data_dir / "test.tsv")
        tokenizer = AutoTokenizer.from_pretrained(base)
        return cls(base, train, validation, test, _encode(tokenizer, train, max_length),
                   _encode(tokenizer, validation, max_length), _encode(tokenizer, test, 512))


@dataclass
class Run:
    """A training run: the model, its optimizer and schedule, the state that checkpoints carry."""

    config: FinetuneConfig
    work_dir: Path
    model: object
    optimizer: object
    scheduler: object
    averaged: object
    state: dict
    batches: list
    steps_per_epoch: int
    total_steps: int
    trainable: int
    total: int

    @classmethod
    def start(cls, config: FinetuneConfig, data: SplitData, work_dir: Path) -> "Run":
        """A new run, or the one checkpointed in ``work_dir`` (torch's random draws in the recipe's order)."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        model, trainable, total = _lora_model(config, data.base)
        steps_per_epoch = math.ceil(len(data.train_ids) / config.batch_size)
        total_steps = int(steps_per_epoch * config.epochs)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=config.learning_rate, weight_decay=config.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
        run = cls(config, work_dir, model, optimizer, scheduler, None,
                  {"step": 0, "best_validation_accuracy": -1.0, "best_step": 0, "history": [], "seconds": 0.0},
                  [], steps_per_epoch, total_steps, trainable, total)
        saved = run._resume()
        run.averaged = _weight_average(model, config.ema_decay)
        if run.averaged is not None and saved is not None:
            run.averaged.module.load_state_dict(saved["averaged"], strict=False)
            run.averaged.n_averaged.fill_(saved["n_averaged"])
        rng, lengths = random.Random(config.seed), [len(x) for x in data.train_ids]
        for _ in range(math.ceil(config.epochs)):
            run.batches.extend(_length_bucketed_batches(lengths, config.batch_size, rng))
        run.batches = run.batches[:total_steps]
        return run

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoint"

    @property
    def evaluated(self):
        """What is evaluated and kept: the weight average, if there is one."""
        return self.averaged.module if self.averaged is not None else self.model

    def train(self, data: SplitData) -> float:
        """Every step left, evaluating and checkpointing as the recipe says; the training seconds in all."""
        eval_every = max(1, self.steps_per_epoch // self.config.evals_per_epoch)
        started = time.perf_counter() - self.state["seconds"]
        self.model.train()
        running_loss, running_n = 0.0, 0
        for step in range(self.state["step"], self.total_steps):
            running_loss += self._step(_collate(data.train_ids, data.train.labels, self.batches[step]))
            running_n += 1
            done = step + 1
            if done % 50 == 0:
                elapsed = time.perf_counter() - started
                log.info("step %d/%d  epoch %.2f  loss %.4f  lr %.2e  %.0fs elapsed, ~%.0fs left",
                         done, self.total_steps, done / self.steps_per_epoch, running_loss / running_n,
                         self.scheduler.get_last_lr()[0], elapsed, elapsed / done * (self.total_steps - done))
                running_loss, running_n = 0.0, 0
            if done % eval_every == 0 or done == self.total_steps:
                self._evaluate(done, data)
                self.state["seconds"] = time.perf_counter() - started
                self._checkpoint()
        return time.perf_counter() - started

    def _step(self, batch) -> float:
        import torch

        loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return loss.item()

    def _evaluate(self, done: int, data: SplitData) -> None:
        accuracy = recipe.evaluate_accuracy(self.evaluated, data.validation_ids, data.validation.labels)
        self.model.train()
        self.state["history"].append({"step": done, "epoch": round(done / self.steps_per_epoch, 3),
                                      "validation_accuracy": accuracy})
        log.info("eval at step %d: validation accuracy %.4f", done, accuracy)
        if accuracy > self.state["best_validation_accuracy"]:
            self.state["best_validation_accuracy"], self.state["best_step"] = accuracy, done
            self.evaluated.save_pretrained(self.work_dir / "best")
        self.state["step"] = done

    def _checkpoint(self) -> None:
        import torch

        self.checkpoint_dir.mkdir(exist_ok=True)
        saved = {"model": _trainable_state(self.model), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state()}
        if self.averaged is not None:
            saved |= {"averaged": _trainable_state(self.averaged.module), "n_averaged": int(self.averaged.n_averaged)}
        torch.save(saved, self.checkpoint_dir / "trainer.pt")
        (self.checkpoint_dir / "state.json").write_text(json.dumps(self.state, indent=2))

    def _resume(self) -> dict | None:
        """The checkpoint's tensors and state put back, if there is one (None: a fresh run)."""
        import torch

        if not (self.checkpoint_dir / "state.json").is_file():
            return None
        self.state = json.loads((self.checkpoint_dir / "state.json").read_text())
        saved = torch.load(self.checkpoint_dir / "trainer.pt", weights_only=False)
        self.model.load_state_dict(saved["model"], strict=False)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if "torch_rng" in saved:  # checkpoints written before it was saved resume with a fresh state
            torch.set_rng_state(saved["torch_rng"])
        log.info("resumed from step %d", self.state["step"])
        return saved


def _lora_model(config: FinetuneConfig, base: Path):
    """The base model with LoRA adapters and a trained head: (model, trainable parameters, all parameters)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=config.target_modules,
                      modules_to_save=list(config.modules_to_save))
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / total)
    return model, trainable, total
