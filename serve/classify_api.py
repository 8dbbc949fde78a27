"""vLLM's classification API, ``POST /classify`` (also ``/v1/classify``, SGLang's path): what gateways proxy.

    {"model": "sst2-minilm", "input": "This course is amazing!"}        # or "input": ["a", "b"]
    → {"id": "classify-…", "object": "list", "created": 1765000000, "model": "sst2-minilm",
       "data": [{"index": 0, "label": "POSITIVE", "probs": [0.02, 0.98], "num_classes": 2}],
       "usage": {"prompt_tokens": 7, "total_tokens": 7, "completion_tokens": 0, "prompt_tokens_details": null}}

``probs`` are in the model's ``id2label`` order and made as ``/predict`` makes its scores (calibrated when
the bundle is); ``prompt_tokens`` counts the tokens the model read, special tokens included. ``model``
picks a served model by name (left out: the default). ``truncate_prompt_tokens`` may be null, or -1 for
vLLM's "cut to the model's limit"; other lengths are refused. Refusals carry that API's error body,
``{"error": {"message", "type", "param", "code"}}``, and a request vLLM would answer 400 is a 400 here too.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ortpipe.serve.protocol import invalid

CLASSIFY_ROUTES = ("/classify", "/v1/classify")
IGNORED = {"user", "priority", "request_id"}  # vLLM's bookkeeping fields: accepted, not used
KNOWN = {"model", "input", "truncate_prompt_tokens", *IGNORED}
ERROR_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 408: "RequestTimeoutError",
               413: "BadRequestError", 429: "RateLimitError", 499: "ClientClosedRequest", 503: "ServiceUnavailableError",
               504: "TimeoutError"}


def parse_classify(body: Any) -> tuple[list[str], bool]:
    """A checked ``/classify`` body (its ``model`` taken off already): (its texts, whether to cut them)."""
    if not isinstance(body, dict):
        raise invalid(f"the body must be a JSON object with 'input', got {type(body).__name__}")
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise invalid(f"unknown field(s) {unknown}; /classify takes {sorted(KNOWN)}")
    if "input" not in body:
        raise invalid("the body has no 'input'")
    texts = body["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise invalid(f"'input' must be a string or a non-empty list of strings; got {_kind(texts)}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise invalid(f"input[{index}] must be a string (token ids are not taken: send the text); "
                          f"got {_kind(text)}")
    for name, kind in (("user", str), ("request_id", str), ("priority", int)):
        value = body.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise invalid(f"'{name}' must be {'an integer' if kind is int else 'a string'} or null, got {value!r}"
                          [:200])
    cut = body.get("truncate_prompt_tokens")
    if cut is not None and (isinstance(cut, bool) or cut != -1):
        raise invalid(f"'truncate_prompt_tokens' may be null (texts over the model's limit are refused) or -1 (cut "
                      f"to the model's limit); got {cut!r}")
    return texts, cut == -1


def _kind(value: Any) -> str:
    return "an empty list" if value == [] else type(value).__name__


def classify_answer(model: str, labels: list[str], probs: list[list[float]], tokens: int) -> dict:
    """The response body: one ``data`` entry per text, its label the best-scored one."""
    data = [{"index": index, "label": labels[max(range(len(row)), key=row.__getitem__)], "probs": row,
             "num_classes": len(row)} for index, row in enumerate(probs)]
    return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
            "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                                    "prompt_tokens_details": None}}


def classify_error(status: int, payload: dict) -> tuple[int, dict]:
    """A refusal in vLLM's error body; ortpipe's 422 (a field the model cannot take) is vLLM's 400."""
    status = 400 if status == 422 else status
    kind = ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "BadRequestError")
    return status, {"error": {"message": payload.get("error", ""), "type": kind, "param": None, "code": status}}


async def respond(predictor, body: dict, timeout_header: str | None, timings: dict, guard) -> dict:
    """One ``/classify`` request's answer from ``predictor`` (a :class:`~ortpipe.serve.predictor.Predictor`)."""
    texts, cut = parse_classify(body)
    probs, tokens = await predictor.classify(texts, cut, timeout_header, timings, guard)
    return classify_answer(predictor.name, predictor.clf.labels, probs, tokens)


_DATA = {"type": "object", "properties": {
    "index": {"type": "integer"}, "label": {"type": "string"},
    "probs": {"type": "array", "items": {"type": "number"}, "description": "per label, in id2label order"},
    "num_classes": {"type": "integer"}}}
_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
    "code": {"type": "integer"}}}}}
CLASSIFY_OPENAPI = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["input"], "properties": {
            "model": {"type": ["string", "null"], "description": "a served model's name (default: the default "
                                                                 "model)"},
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
            "truncate_prompt_tokens": {"type": ["integer", "null"], "enum": [-1, None],
                                       "description": "-1: cut texts to the model's limit (default: refuse them)"},
            "user": {"type": ["string", "null"]}, "priority": {"type": ["integer", "null"]},
            "request_id": {"type": ["string", "null"]}},
        "additionalProperties": False, "example": {"input": "This course is amazing!"}}}}},
    "responses": {
        "200": {"description": "per text, its label and every label's probability",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "id": {"type": "string"}, "object": {"type": "string", "enum": ["list"]},
                    "created": {"type": "integer"}, "model": {"type": "string"},
                    "data": {"type": "array", "items": _DATA}, "usage": {"type": "object"}}}}}},
        **{str(code): {"description": why, "content": {"application/json": {"schema": _ERROR}}} for code, why in (
            (400, "a malformed body, or a field or text the model cannot take"), (404, "no such model"),
            (413, "too many inputs or bytes"), (429, "the queue is full (Retry-After)"),
            (500, "the model failed on this batch"), (503, "draining"), (504, "timed out in the queue"))}},
}
