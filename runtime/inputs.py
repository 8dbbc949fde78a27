"""Check what a caller passed to :class:`TextClassifier` and put it in one shape.

Accepted, as in ``transformers.pipeline("text-classification")``: a ``str``;
a ``{"text": ..., "text_pair": ...}`` dict; or a list (or tuple) of those.
Every text must be valid Unicode: a lone surrogate (``"\ud800"``, as left by
decoding bytes with ``errors="surrogateescape"``) is an :class:`InputError`
naming the item, never replaced silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.tokenize import TextInput

_EXPECTED = "a str, a dict {'text': str, 'text_pair': str}, or a list of them"


@dataclass(frozen=True)
class Inputs:
    """The texts to classify, and whether the caller gave a single one."""

    items: list[TextInput]
    single: bool
    single_str: bool


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (its first lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start}"
    return None


def _valid(text: str, index: int | None, field: str | None = None) -> str:
    """``text`` if it encodes to UTF-8; else an InputError naming the first bad code point."""
    problem = unicode_problem(text)
    if problem:
        raise InputError.about("{item} is not valid Unicode: {problem} (decode bytes with errors='replace' to keep "
                               "such text)", index, field, problem=problem)
    return text


def _one(item: Any, index: int | None) -> TextInput:
    if isinstance(item, str):
        return _valid(item, index)
    if isinstance(item, dict):
        unknown = set(item) - {"text", "text_pair"}
        if unknown or "text" not in item:
            raise InputError.about("{item}: a dict input needs the key 'text' and may have 'text_pair'; got keys "
                                   "{keys}", index, keys=sorted(map(str, item)))
        text, pair = item["text"], item.get("text_pair")
        if not isinstance(text, str):
            raise InputError.about("{item}: 'text' must be a str, got {kind}", index, kind=type(text).__name__)
        _valid(text, index, "text")
        if pair is None:
            return text
        if not isinstance(pair, str):
            raise InputError.about("{item}: 'text_pair' must be a str, got {kind}", index, kind=type(pair).__name__)
        return (text, _valid(pair, index, "text_pair"))
    raise InputError.about("{item}: expected {expected}; got {kind}", index, expected=_EXPECTED,
                           kind=type(item).__name__)


def normalize_inputs(inputs: Any) -> Inputs:
    """Validate ``inputs`` and return them as a list.

    Raises:
        InputError: None, a wrong type, a list holding a non-text item, or a
            text that is not valid Unicode (the message names its index).
    """
    if isinstance(inputs, (str, dict)):
        return Inputs([_one(inputs, None)], single=True, single_str=isinstance(inputs, str))
    if isinstance(inputs, (list, tuple)):
        return Inputs([_one(item, i) for i, item in enumerate(inputs)],
                      single=False, single_str=False)
    raise InputError(f"expected {_EXPECTED}; got {type(inputs).__name__}")
