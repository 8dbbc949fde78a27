"""The fine-tuning recipe, run for a few steps on a tiny synthetic data set."""

from __future__ import annotations

import json

import pytest

from ortpipe.export.default_model import WEIGHTS_FILE, verify_adapter
from ortpipe.export import finetune as finetune_module
from ortpipe.export.finetune import FinetuneConfig, finetune

POSITIVE = ["a charming , funny film", "wonderful acting", "great fun", "a moving story", "truly delightful",
            "the best film of the year"]
NEGATIVE = ["a dull , tedious mess", "terrible acting", "boring", "a waste of time", "painfully bad",
            "the worst film of the year"]


def _write_split(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))


@pytest.fixture(scope="module")
def tiny_sst2(tmp_path_factory):
    data = tmp_path_factory.mktemp("sst2")
    rows = [(t, 1) for t in POSITIVE] + [(t, 0) for t in NEGATIVE]
    _write_split(data / "train.tsv", rows * 2)
    _write_split(data / "validation.tsv", rows)
    _write_split(data / "test.tsv", rows[::2])
    return data


QUICK = dict(epochs=1.0, batch_size=6, evals_per_epoch=2, threads=1)


@pytest.fixture(scope="module")
def plain_run(tiny_sst2, tmp_path_factory):
    work = tmp_path_factory.mktemp("plain")
    return work, finetune(tiny_sst2, work, config=FinetuneConfig(**QUICK))


def test_writes_adapter_hash_and_card(plain_run):
    work, card = plain_run
    adapter = work / "adapter"
    assert verify_adapter(adapter) == card["weights_sha256"]
    assert json.loads((adapter / "training_card.json").read_text())["weights_sha256"] == card["weights_sha256"]
    assert card["steps"] == 4 and [h["step"] for h in card["history"]] == [2, 4]
    best = max(card["history"], key=lambda h: h["validation_accuracy"])
    assert card["best_step"] == best["step"]
    assert card["validation_accuracy"] == pytest.approx(best["validation_accuracy"], abs=1e-4)
    assert 0.0 <= card["test_accuracy"] <= 1.0
    assert "site-packages" not in (adapter / "adapter_config.json").read_text()


class _Stop(Exception):
    pass


def _interrupt_after_first_evaluation(monkeypatch):
    """Make training stop (as if killed) right after its first checkpoint."""
    real, calls = finetune_module.evaluate_accuracy, []

    def evaluate_then_stop(*args, **kwargs):
        if calls:
            raise _Stop
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "evaluate_accuracy", evaluate_then_stop)


def test_restart_after_completion_trains_nothing_more(plain_run, tiny_sst2):
    work, card = plain_run
    again = finetune(tiny_sst2, work, work / "again", config=FinetuneConfig(**QUICK))
    assert again["weights_sha256"] == card["weights_sha256"] and again["history"] == card["history"]


@pytest.mark.parametrize("ema_decay", [None, 0.5])
def test_interrupted_run_resumes_exactly(tiny_sst2, tmp_path, monkeypatch, ema_decay):
    config = FinetuneConfig(**QUICK, ema_decay=ema_decay)
    uninterrupted = finetune(tiny_sst2, tmp_path / "whole", config=config)
    with monkeypatch.context() as patch:
        _interrupt_after_first_evaluation(patch)
        with pytest.raises(_Stop):
            finetune(tiny_sst2, tmp_path / "split", config=config)
    assert json.loads((tmp_path / "split" / "checkpoint" / "state.json").read_text())["step"] == 2
    resumed = finetune(tiny_sst2, tmp_path / "split", config=config)
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]
    assert resumed["history"] == uninterrupted["history"]


def test_weight_average_is_what_gets_kept(plain_run, tiny_sst2, tmp_path):
    _, plain = plain_run
    card = finetune(tiny_sst2, tmp_path, config=FinetuneConfig(**QUICK, ema_decay=0.5))
    assert card["hyperparameters"]["ema_decay"] == 0.5
    assert (tmp_path / "adapter" / WEIGHTS_FILE).is_file()
    assert card["weights_sha256"] != plain["weights_sha256"]


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_rejects_a_meaningless_decay(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        FinetuneConfig(ema_decay=decay)
