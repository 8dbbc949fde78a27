"""Stage 1: text → token ids, with the Rust ``tokenizers`` library.

Texts are encoded once without padding (so the batching loop can sort them by
length), then each batch is padded to its own longest row in numpy.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ortpipe.runtime.errors import BundleError, InputError

TextInput = Union[str, tuple[str, str]]

# Texts longer than max_length × this many characters are cut before they are
# encoded (see TextTokenizer.bounded): a 100k-character text then costs what a
# 512-token row costs. The margin keeps the cut's last word past the limit.
CHARS_PER_TOKEN = 8
CUT_MARGIN_TOKENS = 16


@dataclass(frozen=True)
class Encoded:
    """A padded batch of model inputs (numpy int64, shape ``(batch, seq_len)``).

    ``encodings`` keeps the tokenizer's per-text results (tokens, offsets) for
    callers who want to look inside, as ``ortpipe classify --explain`` does.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    encodings: tuple = ()

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def tokens(self) -> list[list[str]]:
        """The token strings of each row, without padding."""
        return [list(e.tokens) for e in self.encodings]


@contextmanager
def rust_failures():
    """The Rust tokenizer's failures on an input as an :class:`InputError` (4xx in the server, not a 500).

    A panic inside the Rust code (a pre-tokenizer regex that blows up, say) reaches Python as pyo3's
    ``PanicException``, a ``BaseException``: it is caught here too, so no ``except Exception`` above misses it.
    """
    try:
        yield
    except (KeyboardInterrupt, SystemExit, InputError):
        raise
    except BaseException as exc:  # noqa: B036 (see the docstring)
        raise InputError(f"the bundle's tokenizer failed on this input ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` set up once for the bundle's model.

    Its settings are fixed at construction and never changed afterwards, so one
    instance may be shared by many threads.
    """

    def __init__(self, path: Path, max_length: int, pad_token_id: int, truncation: bool = True):
        from tokenizers import Tokenizer

        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception
            raise BundleError(f"tokenizer file {path} cannot be read: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._truncating = {"right": self._truncated_copy("right", max_length)}
        self._lock = threading.Lock()
        self.max_length = max_length
        self.pad_token_id = pad_token_id
        self.default_truncation = truncation

    def _truncated_copy(self, direction: str, max_length: int):
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(self._tokenizer.to_str())
        copy.enable_truncation(max_length=max_length, strategy="longest_first", direction=direction)
        return copy

    def _truncating_tokenizer(self, direction: str):
        """The tokenizer that cuts from the ``right`` (default) or the ``left``, made once on first use."""
        if direction not in self._truncating:
            if direction not in ("right", "left"):
                raise InputError(f"truncation direction must be 'right' or 'left', got {direction!r}")
            with self._lock:
                if direction not in self._truncating:
                    self._truncating[direction] = self._truncated_copy(direction, self.max_length)
        return self._truncating[direction]

    def bounded(self, text: str, direction: str = "right", min_tokens: int = 0) -> str:
        """The part of ``text`` that truncation could keep, cut at a whitespace.

        A text over ``max_length × CHARS_PER_TOKEN`` characters is cut to a
        prefix (``right``) or suffix (``left``) of that many characters, doubled
        until its tokens exceed the limit by ``CUT_MARGIN_TOKENS``. Tokens are
        only changed near the cut, beyond the limit, so the truncated encoding
        is the full text's: checked in ``tests/test_tokenize.py``. ``min_tokens``
        raises the bar (for a pair, the other text's length: which text is
        longer decides how ``longest_first`` shares the limit).
        """
        budget = self.max_length * CHARS_PER_TOKEN
        needed = max(self.max_length, min_tokens) + CUT_MARGIN_TOKENS
        while len(text) > budget:
            part = _cut(text, budget, direction)
            if len(self._tokenizer.encode(part, add_special_tokens=False)) >= needed:
                return part
            budget *= 2
        return text

    def _bounded_items(self, texts: Sequence[TextInput], direction: str) -> list:
        budget = self.max_length * CHARS_PER_TOKEN
        items = list(texts)
        for index, item in enumerate(items):
            if isinstance(item, tuple):  # a pair: cut only when one text is long (two long ones go whole)
                first, second = item
                if (len(first) > budget) != (len(second) > budget):
                    long_first = len(first) > budget
                    other = len(self._tokenizer.encode(second if long_first else first, add_special_tokens=False))
                    cut = self.bounded(first if long_first else second, direction, min_tokens=other)
                    items[index] = (cut, second) if long_first else (first, cut)
            elif len(item) > budget:
                items[index] = self.bounded(item, direction)
        return items

    def encode(self, texts: Sequence[TextInput], truncation: bool | None = None, direction: str = "right") -> list:
        """Tokenize texts (or ``(text, text_pair)`` tuples) without padding.

        Args:
            direction: where over-long texts are cut, ``"right"`` (the end) or ``"left"``.

        Raises:
            InputError: ``truncation=False`` and a text is longer than the model's limit.
        """
        truncation = self.default_truncation if truncation is None else truncation
        tokenizer = self._truncating_tokenizer(direction) if truncation else self._tokenizer
        if truncation:
            texts = self._bounded_items(texts, direction)
        with rust_failures():
            if len(texts) == 1:
                first = texts[0]
                encodings = [tokenizer.encode(*first) if isinstance(first, tuple) else tokenizer.encode(first)]
            else:
                encodings = tokenizer.encode_batch(list(texts))
        if not truncation:
            for index, encoding in enumerate(encodings):
                if len(encoding.ids) > self.max_length:
                    raise InputError.about("{item} has {tokens} tokens, more than the model's limit of {limit}; "
                                           "{truncate_hint} to cut it, or {window_hint} to classify it whole "
                                           "through windows", index, tokens=len(encoding.ids),
                                           limit=self.max_length)
        return encodings

    def encode_whole(self, texts: Sequence[TextInput], add_special_tokens: bool = True) -> list:
        """Tokenize texts (or ``(text, text_pair)`` tuples), with their special tokens, and never truncate them."""
        with rust_failures():
            if len(texts) == 1:
                first = texts[0]
                args = first if isinstance(first, tuple) else (first,)
                return [self._tokenizer.encode(*args, add_special_tokens=add_special_tokens)]
            return self._tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)

    @property
    def special_tokens(self) -> int:
        """Special tokens the tokenizer adds to one text ([CLS] … [SEP]: 2)."""
        return self._tokenizer.num_special_tokens_to_add(False)

    def truncated(self, encodings: Sequence) -> int:
        """How many of ``encodings`` (from :meth:`encode` with truncation) lost tokens to the model's limit."""
        return sum(1 for e in encodings if len(e.ids) >= self.max_length and e.overflowing)

    def collate(self, encodings: Sequence) -> Encoded:
        """Pad encodings to the longest of them and stack them into numpy arrays."""
        lengths = [len(e.ids) for e in encodings]
        width = max(lengths)
        if min(lengths) == width:  # nothing to pad (always so for one text): build the arrays directly
            return Encoded(np.array([e.ids for e in encodings], dtype=np.int64),
                           np.array([e.attention_mask for e in encodings], dtype=np.int64),
                           np.array([e.type_ids for e in encodings], dtype=np.int64), tuple(encodings))
        rows = len(encodings)
        input_ids = np.full((rows, width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((rows, width), dtype=np.int64)
        token_type_ids = np.zeros((rows, width), dtype=np.int64)
        for row, (encoding, n) in enumerate(zip(encodings, lengths)):
            input_ids[row, :n] = encoding.ids
            attention_mask[row, :n] = 1
            token_type_ids[row, :n] = encoding.type_ids
        return Encoded(input_ids, attention_mask, token_type_ids, tuple(encodings))

    def __call__(self, texts: Sequence[TextInput], truncation: bool | None = None) -> Encoded:
        return self.collate(self.encode(texts, truncation))


def _cut(text: str, size: int, direction: str) -> str:
    """The first (``right``) or last (``left``) ``size`` characters, ending at a whitespace when one is near."""
    if direction == "left":
        start = len(text) - size
        space = next((i for i in range(start, start + size // 4) if text[i].isspace()), start)
        return text[space:]
    space = next((i for i in range(size, size - size // 4, -1) if text[i].isspace()), size)
    return text[:space]
