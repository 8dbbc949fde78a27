"""Measure an ONNX variant against PyTorch (or fp32 ONNX) on real texts.

optimum's own check feeds one batch of random dummy ids and reports pass or
fail; ortpipe needs numbers for the manifest and a check of every variant, on
real sentences of mixed lengths, padded as the runtime pads them, at batch
sizes other than the exporter's. So this module runs the runtime's own
tokenizer and ONNX session beside the PyTorch model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ortpipe.runtime.batching import run_in_batches
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.tokenize import Encoded, TextTokenizer

PROBE_BATCH_SIZES = (1, 3, 8)

PROBE_TEXTS = (
    "This course is amazing!",
    "Bad.",
    "I've been waiting for a HuggingFace course my whole life.",
    "The plot is thin, the acting is wooden, and the two hours felt like four.",
    "an ambitious , often beautiful film that never quite finds its footing",
    "Not bad at all, although the ending drags on longer than it should.",
    "It is what it is.",
    "A gorgeous, funny, heartbreaking story about growing up, told with warmth and never a false note; "
    "the kind of film you want to see again the moment the credits roll, and then tell all your friends about.",
    "worst. movie. ever.",
    "The service was slow but the food made up for it.",
    "Je ne sais pas si ce film est bon.",
    "Quietly devastating, and one of the year's best.",
    "Neither the script nor the direction can rescue this tedious, overlong and utterly predictable mess "
    "from its own worst instincts, and by the end even the usually reliable lead seems to have given up "
    "trying to make any of it matter at all, which is a shame because the premise had real promise.",
    "ok",
    "I loved it. I hated it. I can't stop thinking about it.",
    "A film that manages to be both thrilling and thoughtful, with a final act that lands every punch.",
    "Dull.",
    "The first half is a slog, but the second half is pure joy from start to finish.",
    "emoji 🎉🎉 and 中文 text mixed in",
    "Two stars: pretty to look at, empty inside.",
    "Everything about this is wonderful: the cast, the score, the cinematography.",
    "If you liked the book you will probably hate the movie.",
    "meh",
    "Surprisingly moving for a film about a talking dog.",
)


@dataclass(frozen=True)
class Comparison:
    """How one model's logits compare with a reference's on the same texts."""

    max_abs_diff: float
    label_agreement: float
    texts: int
    batch_sizes: tuple[int, ...]

    def as_dict(self) -> dict:
        data = asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        return data


def _batches(tokenizer: TextTokenizer, texts: Sequence[str], batch_size: int) -> list[Encoded]:
    return [tokenizer(list(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]


def torch_logits(model, encoded: Encoded, input_names: Sequence[str]) -> np.ndarray:
    """Logits of a PyTorch sequence classifier on a padded batch."""
    import torch

    feed = {name: torch.from_numpy(getattr(encoded, name)) for name in input_names}
    with torch.inference_mode():
        return model(**feed).logits.float().numpy()


def compare_with_torch(onnx_model: OnnxModel, torch_model, tokenizer: TextTokenizer,
                       texts: Sequence[str] = PROBE_TEXTS,
                       batch_sizes: Sequence[int] = PROBE_BATCH_SIZES) -> Comparison:
    """Max |Δlogit| and label agreement of ONNX against PyTorch, batch size by batch size."""
    worst, agree, total = 0.0, 0, 0
    for batch_size in batch_sizes:
        for encoded in _batches(tokenizer, texts, batch_size):
            expected = torch_logits(torch_model, encoded, onnx_model.input_names)
            actual = onnx_model(encoded)
            worst = max(worst, float(np.abs(expected - actual).max()))
            agree += int((expected.argmax(-1) == actual.argmax(-1)).sum())
            total += len(encoded)
    return Comparison(worst, agree / total, len(texts), tuple(batch_sizes))


def compare_with_onnx(candidate: OnnxModel, reference: OnnxModel, tokenizer: TextTokenizer,
                      texts: Sequence[str], batch_size: int = 32) -> Comparison:
    """Max |Δlogit| and label agreement of one ONNX variant against another."""
    worst, agree = 0.0, 0
    for encoded in _batches(tokenizer, texts, batch_size):
        expected, actual = reference(encoded), candidate(encoded)
        worst = max(worst, float(np.abs(expected - actual).max()))
        agree += int((expected.argmax(-1) == actual.argmax(-1)).sum())
    return Comparison(worst, agree / len(texts), len(texts), (batch_size,))


def logits_in_batches(model: OnnxModel, tokenizer: TextTokenizer, texts: Sequence[str],
                      batch_size: int = 32, sort_by_length: bool = True) -> np.ndarray:
    """Logits of ``texts`` in input order, batched by the runtime's own loop (length-sorted unless told not)."""
    encodings = tokenizer.encode(list(texts))
    rows = run_in_batches(encodings, [len(e.ids) for e in encodings], batch_size,
                          lambda batch: list(model(tokenizer.collate(batch))), sort_by_length)
    return np.stack(rows)


def accuracy(model: OnnxModel, tokenizer: TextTokenizer, texts: Sequence[str], labels: Sequence[int],
             batch_size: int = 32) -> float:
    """Share of ``texts`` whose argmax label equals ``labels``.

    Batched by the runtime's own loop (length-sorted, batch size 32), so the
    figure is what ``TextClassifier(texts, batch_size=32)`` would score.
    """
    predicted = logits_in_batches(model, tokenizer, texts, batch_size).argmax(-1)
    return float((predicted == np.asarray(labels)).mean())
