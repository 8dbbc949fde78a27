"""What clients send and get back: TEI's ``/predict``, plus what pipeline users send.

Accepted bodies (a JSON object):

- TEI: ``{"inputs": "text"}``; ``{"inputs": ["a", "b"]}`` is one text pair (as
  TEI reads it); ``{"inputs": [["a"], ["a", "b"]]}`` a batch, pairs allowed; a
  list of other than two strings is a batch of single texts. With
  ``truncate``, ``truncation_direction`` (``"right"``/``"left"``), ``raw_scores``.
- ``transformers.pipeline`` and the Hugging Face inference API:
  ``{"inputs": ..., "parameters": {"top_k", "function_to_apply", "truncation"}}``
  and ``{"text", "text_pair"}`` dicts as items.
- Long texts, classified whole (at the top level or in ``parameters``): ``window``
  (tokens per window, or ``"auto"``; ``null`` turns off the server's ``--window``),
  ``stride``, ``aggregate`` (``mean``/``max``/``first``), ``return_windows``.

The answer has TEI's shape: one list of ``{"score", "label"}`` (best first,
every label unless ``top_k``) per text; a single text gets just its list —
except in the inference API's form (a ``parameters`` object present, as
``huggingface_hub.InferenceClient`` sends), where a single text's list comes
wrapped in one more list, as that API answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.inputs import normalize_inputs
from ortpipe.runtime.call import CallOptions, ModelFacts, Plan, plan_rows
from ortpipe.runtime.tokenize import TextInput
from ortpipe.runtime.windows import WindowOptions
from ortpipe.serve.errors import STATUS_MEANINGS, ServeError

# the names a /predict body gives what the Python API calls input[i], truncation=… and window=…
HTTP_NAMES = {"inputs": "inputs", "truncate_hint": 'send "truncate": true', "truncation_off": '"truncate": false',
              "window": '"window"', "window_hint": '"window": "auto"'}
WINDOW_KEYS = {"window", "stride", "aggregate", "return_windows"}
SCORE_KEYS = {"calibrated", "threshold", "explain"}
KNOWN_KEYS = {"inputs", "parameters", "truncate", "truncation", "truncation_direction", "raw_scores", "top_k",
              "function_to_apply", *WINDOW_KEYS, *SCORE_KEYS}
KNOWN_PARAMETERS = {"top_k", "function_to_apply", "truncation", "truncate", "truncation_direction", "raw_scores",
                    *WINDOW_KEYS, *SCORE_KEYS}


class RequestError(ServeError):
    """A request the server refuses: HTTP status, TEI ``error_type`` and a message naming the problem."""

    REASONS = {413: "too_large", 503: "draining", 404: "unknown_model"}  # ortpipe_rejections; else "invalid"

    def __init__(self, status: int, error_type: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.headers = headers or {}
        self.reason = self.REASONS.get(status, "invalid")


def invalid(message: str) -> RequestError:
    return RequestError(422, "validation", message)


@dataclass(frozen=True)
class PredictRequest:
    """A checked ``/predict`` body: its texts, the call's :class:`~ortpipe.runtime.call.CallOptions`, its shape."""

    items: list[TextInput]
    single: bool
    options: CallOptions
    nested: bool = False  # inference API form: a single text's answer is wrapped in a list too

    @property
    def truncate(self) -> bool:
        return self.options.truncation

    @property
    def truncation_direction(self) -> str:
        return self.options.truncation_direction

    @property
    def function(self) -> str:
        return self.options.function

    @property
    def top_k(self) -> int | None:
        return self.options.top_k

    @property
    def windows(self) -> WindowOptions | None:
        return self.options.windows

    def plan(self, tokenizer) -> Plan:
        return plan_rows(tokenizer, self.items, self.options)

    def shape(self, results: list) -> list:
        """Per-text results in the shape this request's client expects."""
        return results[0] if self.single and not self.nested else results


def _items(inputs: Any) -> tuple[list, bool]:
    """TEI's reading of ``inputs``: (items, whether the caller sent a single one)."""
    if isinstance(inputs, (str, dict)):
        return [inputs], True
    if not isinstance(inputs, list):
        raise invalid(f"'inputs' must be a string, a [text, text_pair] pair or a list of them; "
                      f"got {type(inputs).__name__}")
    if not inputs:
        raise invalid("'inputs' is an empty batch: send at least one text")
    if len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
        return [{"text": inputs[0], "text_pair": inputs[1]}], True
    items = []
    for index, item in enumerate(inputs):
        if isinstance(item, list):
            if len(item) not in (1, 2) or not all(isinstance(x, str) for x in item):
                raise invalid(f"inputs[{index}]: a list item must be [text] or [text, text_pair] of strings")
            item = item[0] if len(item) == 1 else {"text": item[0], "text_pair": item[1]}
        items.append(item)
    return items, False


PAIR_WARNING = ('299 ortpipe "inputs of two strings are read as one text pair, as TEI reads them; send '
                '[[\\"a\\"], [\\"b\\"]] for two texts"')


def reads_as_pair(body: Any) -> bool:
    """Whether ``body``'s ``inputs`` is TEI's ``[text, text_pair]``: two strings, read as one pair."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    return isinstance(inputs, list) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs)


def flag(value: Any, name: str, default: bool) -> bool:
    """A body's true/false field (None: ``default``); anything else is a 422 naming it."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{name}' must be true or false, got {value!r}")
    return value


def parse_predict(body: Any, facts: ModelFacts, max_client_batch: int,
                  default_window: int | str | None = None) -> PredictRequest:
    """Check a parsed JSON body; raises :class:`RequestError` (422, or 413 over ``max_client_batch``).

    ``facts.windowing`` checks the window fields (``TextClassifier.window_options``; None: no windows);
    ``default_window`` applies when the body has no ``window`` (``"window": null`` turns windows off).
    """
    if not isinstance(body, dict):
        raise invalid(f"the body must be a JSON object with 'inputs', got {type(body).__name__}")
    if "inputs" not in body:
        raise invalid("the body has no 'inputs'")
    unknown = set(body) - KNOWN_KEYS
    if unknown:
        raise invalid(f"unknown field(s) {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict) or set(parameters) - KNOWN_PARAMETERS:
        raise invalid(f"'parameters' must be an object with some of {sorted(KNOWN_PARAMETERS)}")
    options = {**parameters, **{k: v for k, v in body.items() if k != "parameters"}}
    raw, single = _items(body["inputs"])
    if len(raw) > max_client_batch:
        raise RequestError(413, "validation", f"{len(raw)} inputs in one request; the limit is "
                                              f"{max_client_batch} (--max-client-batch)")
    raw_scores = flag(options.get("raw_scores"), "raw_scores", False)
    truncate = flag(options.get("truncate", options.get("truncation")), "truncate", False)
    direction = options.get("truncation_direction") or "right"
    if not isinstance(direction, str) or direction.lower() not in ("right", "left"):
        raise invalid(f"'truncation_direction' must be 'right' or 'left', got {direction!r}")
    try:
        items = normalize_inputs(raw).items
        windows = request_windows(options, facts.windowing, default_window) if facts.windowing is not None else None
        call = CallOptions.parse(facts, windows=windows, top_k=options.get("top_k"), truncation=truncate,
                                 truncation_direction=direction,
                                 function_to_apply="none" if raw_scores else options.get("function_to_apply"),
                                 calibrated=flag(options.get("calibrated"), "calibrated", True),
                                 threshold=options.get("threshold"), explain=flag(options.get("explain"),
                                                                                   "explain", False))
    except InputError as exc:
        raise invalid(exc.render(HTTP_NAMES)) from None
    return PredictRequest(items, single, call, nested="parameters" in body)


def request_windows(options: dict, windowing: Callable[..., WindowOptions | None],
             default_window: int | str | None) -> WindowOptions | None:
    """The request's window settings: its own ``window`` (null: off), else the server's default."""
    asked = "window" in options
    window = options["window"] if asked else default_window
    # TEI's truncate defaults to false, and windows never truncate: only an explicit window with an
    # explicit "truncate": false contradicts itself
    explicit_false = asked and options.get("truncate", options.get("truncation")) is False
    try:
        if window is None:
            return windowing(None, options.get("stride"), options.get("aggregate"),
                             options.get("return_windows", False))
        return windowing(window, options.get("stride"), options.get("aggregate"),
                         options.get("return_windows", False), truncation=not explicit_false)
    except InputError as exc:
        raise invalid(exc.render(HTTP_NAMES)) from None


_TEXT_OR_PAIR = {"oneOf": [
    {"type": "string", "description": "a text"},
    {"type": "object", "required": ["text"], "additionalProperties": False,
     "properties": {"text": {"type": "string"}, "text_pair": {"type": "string"}}},
    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2,
     "description": "[text] or [text, text_pair]"},
]}
_OPTIONS = {
    "top_k": {"type": "integer", "minimum": 1, "description": "labels per text, best first (default: all)"},
    "function_to_apply": {"type": "string", "enum": ["default", "softmax", "sigmoid", "none"]},
    "truncate": {"type": "boolean", "description": "cut texts over the model's limit (default false: 422)"},
    "truncation": {"type": "boolean", "description": "the pipeline's name for truncate"},
    "truncation_direction": {"type": "string", "enum": ["right", "left"]},
    "raw_scores": {"type": "boolean", "description": "logits instead of probabilities"},
    "window": {"oneOf": [{"type": "integer", "minimum": 16}, {"type": "string", "enum": ["auto"]},
                         {"type": "null"}],
               "description": "classify each text whole through windows of this many tokens (special tokens "
                              "included), 'auto' for the bundle's recommended window, null for none (default: "
                              "the server's --window)"},
    "stride": {"type": "integer", "minimum": 0, "description": "tokens shared by consecutive windows "
                                                               "(default: a quarter of the window)"},
    "aggregate": {"type": "string", "enum": ["mean", "max", "first"],
                  "description": "how window logits become one answer (default mean)"},
    "return_windows": {"type": "boolean", "description": "add each window's character span, label and score"},
    "calibrated": {"type": "boolean", "description": "divide the logits by the bundle's fitted temperature "
                                                     "(default true when it has one); false: raw scores"},
    "threshold": {"oneOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string", "enum": ["auto"]},
                            {"type": "object", "additionalProperties": {"type": "number", "minimum": 0,
                                                                        "maximum": 1}}],
                  "description": "a single-label text whose top score is below it gets label null; multi-label: "
                                 "every label at or above it; 'auto': the bundle's, for its target precision"},
    "explain": {"type": "boolean", "description": "add each returned label's word-level explanation (one more "
                                                  "row per word: counts against --max-client-batch)"},
}
PREDICT_BODY_SCHEMA = {
    "type": "object", "required": ["inputs"], "additionalProperties": False,
    "properties": {
        "inputs": {"oneOf": [_TEXT_OR_PAIR, {"type": "array", "items": _TEXT_OR_PAIR, "minItems": 1}],
                   "description": "a text, a [text, text_pair] pair, or a batch of texts and pairs"},
        "parameters": {"type": "object", "properties": _OPTIONS, "additionalProperties": False,
                       "dependentRequired": {"stride": ["window"], "aggregate": ["window"]},
                       "description": "the inference API's form; a single text's answer comes wrapped in a list"},
        **_OPTIONS,
    },
    # stride and aggregate only mean something with a window (a server's --window counts too, but the schema
    # cannot know it); return_windows is accepted either way (false without a window changes nothing)
    "dependentRequired": {"stride": ["window"], "aggregate": ["window"]},
    "example": {"inputs": "This course is amazing!"},
}
ERROR_SCHEMA = {"type": "object", "required": ["error", "error_type"],
                "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}}}


def error_responses(*statuses: int | tuple[int, str]) -> dict:
    """OpenAPI ``responses`` for refusals, each with the ``{error, error_type}`` body.

    A status alone takes its meaning from :data:`~ortpipe.serve.errors.STATUS_MEANINGS`; ``(status, why)``
    says what it means on that route.
    """
    pairs = [(code, STATUS_MEANINGS[code]) if isinstance(code, int) else code for code in statuses]
    return {str(code): {"description": why, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for code, why in pairs}
