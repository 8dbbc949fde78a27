"""Long texts classified whole: overlapping token windows, their logits aggregated per text.

    clf(long_texts, window=128, stride=32, aggregate="mean")

A text is tokenized whole (no truncation), then cut into windows of at most
``window`` tokens, special tokens included, consecutive windows sharing
``stride`` tokens: the windows of Hugging Face tokenizers' overflow
(``enable_truncation(max_length=window, stride=stride, strategy="only_first")``),
so a ``text_pair`` goes whole into every window. The windows of every text are
items of the one batching loop (:func:`~ortpipe.runtime.batching.run_in_batches`,
or the server's batcher), and each text's window logits are then aggregated —
``mean`` (then the usual softmax/sigmoid), ``max`` (a label found in any window,
for multi-label), ``first`` — before postprocessing.

The overflow is computed here rather than by the tokenizer because a long
text's overflow encodings would all live at once (a 5 MB text: about ten
thousand ``Encoding`` objects with their strings); a :class:`Window` is a
range over its text's token ids, and its arrays are built only when its batch
is collated. A text that fits in one window is one window holding exactly
the tokens it has without windows, so it gets exactly the same scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.predict import best_label
from ortpipe.runtime.window_options import (AGGREGATES, DEFAULT_AGGREGATE, MIN_WINDOW,  # noqa: F401 (re-exported)
                                            WindowOptions, default_stride, window_options)

# characters tokenized per call of the Rust tokenizer: bounds what its encodings hold at once
_ENCODE_CHARS = 1 << 18
# a text longer than this is tokenized in pieces (see TokenizedText.in_pieces); texts that fit in any
# window (512 tokens are a few thousand characters) are always tokenized whole
SEGMENT_CHARS = 1 << 15


class TokenizedText:
    """One text tokenized whole, as compact arrays: every id, and the span of the first text's tokens."""

    __slots__ = ("ids", "type_ids", "offsets", "first", "last")

    def __init__(self, ids: np.ndarray, type_ids: np.ndarray, offsets: np.ndarray, first: int, last: int):
        self.ids, self.type_ids, self.offsets, self.first, self.last = ids, type_ids, offsets, first, last

    @classmethod
    def of(cls, encoding) -> "TokenizedText":
        """From a ``tokenizers.Encoding`` made with the special tokens."""
        own = [i for i, s in enumerate(encoding.sequence_ids) if s == 0]  # the first text's tokens (contiguous)
        first, last = (own[0], own[-1] + 1) if own else (len(encoding.ids), len(encoding.ids))
        return cls(np.asarray(encoding.ids, dtype=np.int32), np.asarray(encoding.type_ids, dtype=np.int32),
                   np.asarray(encoding.offsets[first:last], dtype=np.int64).reshape(-1, 2), first, last)

    @classmethod
    def in_pieces(cls, tokenizer, text: str, pair: str | None) -> "TokenizedText":
        """A text over :data:`SEGMENT_CHARS` characters, tokenized in pieces cut at whitespace.

        The Rust tokenizer holds about 700 bytes per token while it encodes one string (measured:
        366 MB for a 2 MB text); pieces of ``SEGMENT_CHARS`` bound that. Cut at whitespace, the pieces
        give the whole text's tokens (checked in ``tests/test_windows.py``); the special tokens and the
        pair come from encoding a one-word stand-in for the text.
        """
        template = cls.of(tokenizer.encode_whole([("a", pair) if pair is not None else "a"])[0])
        pieces, starts = _pieces(text)
        ids, offsets, starts = [], [], iter(starts)
        for _, group in _groups(pieces, _ENCODE_CHARS):
            for encoding in tokenizer.encode_whole(group, add_special_tokens=False):
                ids.append(np.asarray(encoding.ids, dtype=np.int32))
                offsets.append(np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2) + next(starts))
        content = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
        own_type = template.type_ids[template.first]
        first, after = template.first, template.last
        return cls(np.concatenate((template.ids[:first], content, template.ids[after:])),
                   np.concatenate((template.type_ids[:first], np.full(len(content), own_type, dtype=np.int32),
                                   template.type_ids[after:])),
                   np.concatenate(offsets) if offsets else np.zeros((0, 2), dtype=np.int64),
                   first, first + len(content))

    @property
    def content(self) -> int:
        """Tokens of the first text (the part that is windowed)."""
        return self.last - self.first

    @property
    def fixed(self) -> int:
        """Tokens in every window: special tokens and the whole ``text_pair``."""
        return len(self.ids) - self.content

    def windows(self, options: WindowOptions, index: int | None = None) -> list["Window"]:
        """The text's windows, as the tokenizer's overflow cuts them (the last one may be shorter).

        ``index``: which input the text is, for the error's message.
        """
        room = options.window - self.fixed
        if room < 1 or (self.content > room and options.stride >= room):
            raise InputError.about("{item}: its text_pair and special tokens take {fixed} of the window's {size} "
                                   "tokens, leaving {room} for the text with a stride of {stride}; shorten the "
                                   "text_pair or use a larger window", index, fixed=self.fixed, size=options.window,
                                   room=max(room, 0), stride=options.stride)
        if self.content <= room:
            return [Window(self, 0, self.content)]
        step, found, start = room - options.stride, [], 0
        while True:
            end = min(start + room, self.content)
            found.append(Window(self, start, end))
            if end == self.content:
                return found
            start += step


class Window:
    """A range of a text's tokens with its special tokens and pair: a duck-typed ``tokenizers.Encoding``.

    ``ids``, ``type_ids`` and ``attention_mask`` are built on access (for collating a batch), so the
    windows of a long text hold no arrays of their own.
    """

    __slots__ = ("text", "start", "end")

    def __init__(self, text: TokenizedText, start: int, end: int):
        self.text, self.start, self.end = text, start, end

    def _cut(self, values: np.ndarray) -> np.ndarray:
        t = self.text
        if self.start == 0 and self.end == t.content:
            return values
        return np.concatenate((values[:t.first], values[t.first + self.start:t.first + self.end], values[t.last:]))

    @property
    def ids(self) -> np.ndarray:
        return self._cut(self.text.ids)

    @property
    def type_ids(self) -> np.ndarray:
        return self._cut(self.text.type_ids)

    @property
    def attention_mask(self) -> np.ndarray:
        return np.ones(self.end - self.start + self.text.fixed, dtype=np.int32)

    def __len__(self) -> int:
        return self.end - self.start + self.text.fixed

    @property
    def span(self) -> tuple[int, int]:
        """Characters ``[start, end)`` of the original text that the window's tokens cover."""
        if self.end == self.start:
            return 0, 0
        return int(self.text.offsets[self.start, 0]), int(self.text.offsets[self.end - 1, 1])


@dataclass(frozen=True)
class WindowedTexts:
    """Every window of a list of texts, flat (for the batching loop), and how many belong to each text."""

    windows: list[Window]
    counts: list[int]

    @property
    def lengths(self) -> list[int]:
        return [len(w) for w in self.windows]

    def aggregate(self, logits: np.ndarray, how: str) -> np.ndarray:
        """One row of logits per text from one row per window (in :attr:`windows` order)."""
        rows, start = [], 0
        for count in self.counts:
            rows.append(aggregate_rows(logits[start:start + count], how))
            start += count
        return np.stack(rows) if rows else np.zeros((0, logits.shape[-1]), dtype=logits.dtype)

    def per_text(self) -> list[list[Window]]:
        """The windows of each text."""
        out, start = [], 0
        for count in self.counts:
            out.append(self.windows[start:start + count])
            start += count
        return out

    def details(self, scores: np.ndarray, labels: Sequence[str]) -> list[list[dict]]:
        """Per text, each window's character span with its best label and score (``scores`` per window)."""
        best = best_label(scores, labels) if len(scores) else []
        out, start = [], 0
        for count in self.counts:
            out.append([{"start": w.span[0], "end": w.span[1], **b}
                        for w, b in zip(self.windows[start:start + count], best[start:start + count])])
            start += count
        return out


def aggregate_rows(own: np.ndarray, how: str) -> np.ndarray:
    """One text's logits from its windows' rows: ``mean``, ``max`` or ``first``."""
    if len(own) == 1 or how == "first":
        return own[0]
    if how == "mean":
        return own.mean(axis=0, dtype=np.float64).astype(own.dtype)
    return own.max(axis=0)


def split_texts(tokenizer, items: Sequence, options: WindowOptions) -> WindowedTexts:
    """Tokenize ``items`` (texts or ``(text, text_pair)`` tuples) whole and cut each into windows.

    ``tokenizer`` is a :class:`~ortpipe.runtime.tokenize.TextTokenizer`. Texts are encoded in groups of
    about ``_ENCODE_CHARS`` characters, each group's encodings turned into compact arrays before the
    next; a text over ``SEGMENT_CHARS`` characters is encoded in pieces (:meth:`TokenizedText.in_pieces`).
    """
    windows: list[Window] = []
    counts: list[int] = []
    for first, group in _groups(items, _ENCODE_CHARS):
        short = [item for item in group if text_chars(item) <= SEGMENT_CHARS]
        encoded = iter(tokenizer.encode_whole(short) if short else ())
        for offset, item in enumerate(group):
            if text_chars(item) <= SEGMENT_CHARS:
                text = TokenizedText.of(next(encoded))
            else:
                text = TokenizedText.in_pieces(tokenizer, *(item if isinstance(item, tuple) else (item, None)))
            own = text.windows(options, first + offset)
            windows.extend(own)
            counts.append(len(own))
    return WindowedTexts(windows, counts)


def text_chars(item) -> int:
    """Characters of a text, or of both texts of a ``(text, text_pair)`` tuple."""
    return sum(map(len, item)) if isinstance(item, tuple) else len(item)


def _groups(items: Sequence, size: int):
    """``(index of the first, items)`` groups of about ``size`` characters."""
    group: list = []
    total, first = 0, 0
    for index, item in enumerate(items):
        group.append(item)
        total += text_chars(item)
        if total >= size:
            yield first, group
            group, total, first = [], 0, index + 1
    if group:
        yield first, group


def _pieces(text: str) -> tuple[list[str], list[int]]:
    """``text`` cut into pieces of at most ``SEGMENT_CHARS`` characters, each cut just before a whitespace.

    Where the last quarter of a piece has no whitespace (a very long run of letters), the cut falls
    where the piece ends.
    """
    pieces, starts, start = [], [], 0
    while start < len(text):
        end = min(start + SEGMENT_CHARS, len(text))
        if end < len(text):
            cut = next((i for i in range(end, end - SEGMENT_CHARS // 4, -1) if text[i].isspace()), end)
            end = cut if cut > start else end
        pieces.append(text[start:end])
        starts.append(start)
        start = end
    return pieces, starts


def attach_windows(result: Any, windows: list[dict]) -> dict:
    """A text's result with its windows: ``{'label', 'score', 'windows'}``, or ``{'labels', 'windows'}``."""
    return {**result, "windows": windows} if isinstance(result, dict) else {"labels": result, "windows": windows}
