"""The window settings of a call, checked: ``window``, ``stride``, ``aggregate``, ``return_windows``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ortpipe.runtime.errors import InputError

AGGREGATES = ("mean", "max", "first")
DEFAULT_AGGREGATE = "mean"
MIN_WINDOW = 16  # tokens per window at least: below it, special tokens and overlap leave little text in each

@dataclass(frozen=True)
class WindowOptions:
    """Checked window settings: ``window`` tokens per window, ``stride`` shared by consecutive windows."""

    window: int
    stride: int
    aggregate: str = DEFAULT_AGGREGATE
    return_windows: bool = False

    def as_dict(self) -> dict:
        return {"window": self.window, "stride": self.stride, "aggregate": self.aggregate}


def default_stride(window: int) -> int:
    """A quarter of the window (128 → 32), the overlap the long-document benchmark measured."""
    return window // 4


def window_options(window: Any, stride: Any = None, aggregate: Any = None, return_windows: Any = False, *,
                   max_length: int, recommended: int | None = None, special_tokens: int = 2,
                   truncation: bool = True) -> WindowOptions | None:
    """Check the window arguments of a call; None when windows are off (``window=None``).

    Args:
        window: tokens per window including the special tokens, ``"auto"`` for the bundle's
            recommended window (the model's limit where it recommends none), or None.
        stride: tokens shared by consecutive windows (None: a quarter of the window).
        aggregate: ``"mean"`` (default), ``"max"`` or ``"first"``.
        return_windows: also return each window's character span, label and score.
        max_length: the model's limit; recommended: the bundle's window;
        special_tokens: what the tokenizer adds to one text ([CLS] … [SEP]: 2).
        truncation: windows classify a text whole; ``truncation=False`` with windows is an error.

    Raises:
        InputError: naming the value and the allowed range.
    """
    if window is None:
        unused = [name for name, value in (("stride", stride), ("aggregate", aggregate),
                                           ("return_windows", return_windows)) if value not in (None, False)]
        if unused:
            raise InputError(f"{', '.join(unused)} {'needs' if len(unused) == 1 else 'need'} window=N or "
                             "window='auto' (windows are off)")
        return None
    if window == "auto":
        window = recommended or max_length
    if not isinstance(window, int) or isinstance(window, bool) or not MIN_WINDOW <= window <= max_length:
        raise InputError(f"window must be an int from {MIN_WINDOW} to the model's limit of {max_length} tokens, "
                         f"'auto' or None; got {window!r}")
    if stride is None:
        stride = default_stride(window)
    room = window - special_tokens
    if not isinstance(stride, int) or isinstance(stride, bool) or not 0 <= stride < room:
        raise InputError(f"stride must be an int from 0 to {room - 1} for window={window} (the window less its "
                         f"{special_tokens} special tokens, less one); got {stride!r}")
    aggregate = DEFAULT_AGGREGATE if aggregate is None else aggregate
    if aggregate not in AGGREGATES:
        raise InputError(f"aggregate must be one of {list(AGGREGATES)}, got {aggregate!r}")
    if not isinstance(return_windows, bool):
        raise InputError(f"return_windows must be True or False, got {return_windows!r}")
    if truncation is False:
        raise InputError.about("windows classify a text whole and never truncate it: {truncation_off} cannot be "
                               "used with {window} (leave truncation at its default)")
    return WindowOptions(window, stride, aggregate, return_windows)
