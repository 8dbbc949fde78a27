"""Word-level explanations by leaving each word out: one extra model row per word, batched with the rest.

A word is a run of tokens whose characters touch (a whitespace-separated piece of the text, so
``amazing!`` is one word). Its weight for a label is how much that label's probability drops when the
word's tokens are taken out of the row: the occlusion (leave-one-out) score that ERASER's
comprehensiveness measures. The rows without a word are planned beside the text's own row, so they are
length-sorted and batched within the token budget like any other row.

A text read through windows is explained per window: a word's rows are the windows that hold it, each
without it; the text's answer is then re-aggregated with those windows replaced, so the weight is the
drop of the text's own (aggregated) probability. Cost: one row per (window, word) pair — about
``1 + stride / (window − stride)`` rows per word (4/3 with the default stride).

Pairs: the words of ``text`` are explained; ``text_pair`` is kept whole in every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.windows import TokenizedText, Window, aggregate_rows

MAX_EXPLAINED_WORDS = 2048  # per text: each word is at least one more model row


class Omission:
    """A window's row without one word's tokens (content positions ``[lo, hi)`` of its text)."""

    __slots__ = ("window", "lo", "hi")

    def __init__(self, window: Window, lo: int, hi: int):
        self.window, self.lo, self.hi = window, lo, hi

    def _drop(self, values: np.ndarray) -> np.ndarray:
        w = self.window
        first = w.text.first
        start, end = first + max(self.lo, w.start) - w.start, first + min(self.hi, w.end) - w.start
        return np.concatenate((values[:start], values[end:]))

    @property
    def ids(self) -> np.ndarray:
        return self._drop(np.asarray(self.window.ids))

    @property
    def type_ids(self) -> np.ndarray:
        return self._drop(np.asarray(self.window.type_ids))

    @property
    def attention_mask(self) -> np.ndarray:
        return np.ones(len(self), dtype=np.int32)

    def __len__(self) -> int:
        w = self.window
        return len(w) - (min(self.hi, w.end) - max(self.lo, w.start))


@dataclass
class Explained:
    """One text's words and, per word, which of the text's windows its omission rows replace."""

    text: str
    spans: list[tuple[int, int]]  # characters of each word
    replaced: list[list[tuple[int, int]]] = field(default_factory=list)  # per word: (window of text, row)


def words_of(offsets: np.ndarray) -> list[tuple[int, int]]:
    """Token ranges ``[lo, hi)`` of the words: runs of tokens whose character spans touch."""
    words, lo = [], 0
    for i in range(1, len(offsets) + 1):
        if i == len(offsets) or offsets[i, 0] != offsets[i - 1, 1]:
            if offsets[lo, 1] > offsets[lo, 0] or i - lo > 1:
                words.append((lo, i))
            lo = i
    return words


def plan_omissions(texts: list, windows_per_text: list[list[Window]], first_row: int,
                   index_base: int = 0) -> tuple[list[Omission], list[Explained]]:
    """The omission rows of every text (numbered from ``first_row``) and each text's words."""
    rows: list[Omission] = []
    explained = []
    for index, (text, windows) in enumerate(zip(texts, windows_per_text)):
        tokenized = windows[0].text
        words = words_of(tokenized.offsets)
        if len(words) > MAX_EXPLAINED_WORDS:
            raise InputError.about("{item} has {words} words; explain takes at most {limit} per text (one more "
                                   "model row each): explain it in parts", index + index_base,
                                   words=len(words), limit=MAX_EXPLAINED_WORDS)
        own = Explained(text, [(int(tokenized.offsets[lo, 0]), int(tokenized.offsets[hi - 1, 1]))
                               for lo, hi in words])
        for lo, hi in words:
            replaced = []
            for w_index, window in enumerate(windows):
                if lo < window.end and hi > window.start:
                    replaced.append((w_index, first_row + len(rows)))
                    rows.append(Omission(window, lo, hi))
            own.replaced.append(replaced)
        explained.append(own)
    return rows, explained


def whole_windows(encodings: list) -> list[list[Window]]:
    """Each encoding as one window over all its tokens, to plan omissions from (windows off)."""
    out = []
    for encoding in encodings:
        tokenized = TokenizedText.of(encoding)
        out.append([Window(tokenized, 0, tokenized.content)])
    return out


def word_drops(explained: Explained, window_logits: np.ndarray, all_logits: np.ndarray, how: str,
               to_scores) -> np.ndarray:
    """Per word, each label's score without it: ``(words, labels)``; ``to_scores`` maps logits to scores."""
    if not explained.spans:
        return np.zeros((0, window_logits.shape[-1]), dtype=np.float32)
    variants = []
    for replaced in explained.replaced:
        logits = window_logits.copy()
        for w_index, row in replaced:
            logits[w_index] = all_logits[row]
        variants.append(aggregate_rows(logits, how))
    return to_scores(np.stack(variants))


def explanation(explained: Explained, full: np.ndarray, without: np.ndarray, label: int) -> list[dict]:
    """The words in text order, each with how much ``label``'s score drops without it."""
    drops = full[label] - without[:, label]
    return [{"word": explained.text[start:end], "start": start, "end": end, "weight": round(float(drop), 6)}
            for (start, end), drop in zip(explained.spans, drops)]


