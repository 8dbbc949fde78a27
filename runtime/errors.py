"""ortpipe's exception hierarchy.

Every error ortpipe raises on purpose derives from :class:`OrtpipeError`, so a
service can catch one type. Errors from ONNX Runtime or the tokenizer are
wrapped (``raise ... from exc``) with a message that says what went wrong.

    OrtpipeError
    ├── InputError          bad texts or options given to a call (also a ValueError)
    ├── BundleError         a bundle directory that cannot be used
    │   └── IntegrityError  a file whose sha256 differs from the manifest
    ├── ProviderError       an execution provider that cannot be activated
    └── InferenceError      ONNX Runtime failed while running the graph
"""

from __future__ import annotations


class OrtpipeError(Exception):
    """Base class of every error ortpipe raises on purpose."""


# how the Python API names an input and the options a message may point to; a protocol renders its own
PYTHON_NAMES = {"inputs": "input", "truncate_hint": "pass truncation=True", "truncation_off": "truncation=False",
                "window": "window=…", "window_hint": "window='auto'"}


class InputError(OrtpipeError, ValueError):
    """The texts or options passed to a call are not usable.

    ``index``: the input it is about (None: the call, or a single input); ``field``: the key within it
    (``'text'``, ``'text_pair'``). Built with :meth:`about`, the message is a template that each protocol
    renders in its own names (:meth:`render`: ``input[3]`` and ``pass truncation=True`` here, ``inputs[3]``
    and ``send "truncate": true`` over HTTP) instead of rewriting the text.
    """

    def __init__(self, message: str, index: int | None = None, field: str | None = None,
                 template: str | None = None, values: dict | None = None):
        self.index, self.field, self.template, self.values = index, field, template, values or {}
        super().__init__(message if template is None else self.render())

    @classmethod
    def about(cls, template: str, index: int | None = None, field: str | None = None, **values) -> "InputError":
        """An error whose message names the input as ``{item}`` and options by :data:`PYTHON_NAMES` keys."""
        return cls("", index, field, template, values)

    def render(self, names: dict = PYTHON_NAMES) -> str:
        """The message in ``names`` (same keys as :data:`PYTHON_NAMES`)."""
        if self.template is None:
            return str(self)
        item = names["inputs"] + (f"[{self.index}]" if self.index is not None else "")
        item += f"[{self.field!r}]" if self.field else ""
        return self.template.format(item=item, **{**names, **self.values})


class BundleError(OrtpipeError):
    """A bundle directory is missing, incomplete or inconsistent."""


class IntegrityError(BundleError):
    """A bundle file does not match the sha256 recorded in its manifest."""


class ProviderError(OrtpipeError):
    """The requested ONNX Runtime execution provider cannot be activated."""


class InferenceError(OrtpipeError):
    """ONNX Runtime failed while running the model."""
