"""The Hugging Face Inference API's zero-shot body on ``/predict``, for a model with an entailment label.

    {"inputs": "text" | ["a", "b"],
     "parameters": {"candidate_labels": ["x", "y"], "multi_label": false, "hypothesis_template": "This example is {}."}}

A body is zero-shot when it has ``candidate_labels`` (in ``parameters``, or at the top level as every
other option may be). The answer is transformers' pipeline's: ``{"sequence", "labels", "scores"}`` for a
single text (as ``huggingface_hub.InferenceClient.zero_shot_classification`` reads it), a list of them for
a list. Every (text, label) pair is a model row: the pairs count against ``--max-client-batch`` (a 413
naming it), and with windows each pair's windows against ``--max-client-windows``. Texts over the model's
limit are cut (the pipeline's ``truncation``) unless the body says ``"truncate": false``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ortpipe.runtime.call import CallOptions, ModelFacts
from ortpipe.runtime.errors import InputError
from ortpipe.runtime.windows import WindowOptions
from ortpipe.runtime.zero_shot import (DEFAULT_TEMPLATE, ZeroShotOptions, ZeroShotPlan, no_entailment, pair_options,
                                       plan_zero_shot, zero_shot_texts)
from ortpipe.serve.protocol import HTTP_NAMES, WINDOW_KEYS, RequestError, flag, invalid, request_windows

ZERO_SHOT_KEYS = {"candidate_labels", "multi_label", "hypothesis_template"}
KNOWN_KEYS = {"inputs", "parameters", "truncate", "truncation", *WINDOW_KEYS - {"return_windows"}, *ZERO_SHOT_KEYS}


def is_zero_shot(body: Any) -> bool:
    """Whether a ``/predict`` body asks for zero-shot classification (it names ``candidate_labels``)."""
    if not isinstance(body, dict):
        return False
    parameters = body.get("parameters")
    return "candidate_labels" in body or (isinstance(parameters, dict) and "candidate_labels" in parameters)


@dataclass(frozen=True)
class ZeroShotRequest:
    """A checked zero-shot body: its texts, candidate labels, the pair rows' options, its shape."""

    texts: list[str]
    single: bool
    zero_shot: ZeroShotOptions
    options: CallOptions
    entailment: int

    @property
    def items(self) -> list[tuple[str, str]]:
        """The (text, hypothesis) pairs: what the request's size is reckoned from."""
        return [(text, hypothesis) for text in self.texts for hypothesis in self.zero_shot.hypotheses]

    @property
    def windows(self) -> WindowOptions | None:
        return self.options.windows

    def plan(self, tokenizer) -> ZeroShotPlan:
        return plan_zero_shot(tokenizer, self.texts, self.zero_shot, self.options, self.entailment)

    def shape(self, results: list) -> dict | list:
        return results[0] if self.single else results


def parse_zero_shot(body: dict, facts: ModelFacts, entailment: int | None, max_client_batch: int,
                    default_window: int | str | None = None) -> ZeroShotRequest:
    """Check a zero-shot body; raises :class:`RequestError` (422, or 413 over ``max_client_batch`` pairs)."""
    if entailment is None:
        raise invalid(f"a zero-shot body (candidate_labels) needs an NLI model: {no_entailment(facts.labels)}")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict) or set(parameters) - KNOWN_KEYS or set(body) - KNOWN_KEYS:
        unknown = sorted((set(body) | (set(parameters) if isinstance(parameters, dict) else set())) - KNOWN_KEYS)
        raise invalid(f"a zero-shot body takes 'inputs' and some of {sorted(KNOWN_KEYS - {'inputs'})} (top level or "
                      f"in 'parameters'); unknown: {unknown}")
    if "inputs" not in body:
        raise invalid("the body has no 'inputs'")
    options = {**parameters, **{k: v for k, v in body.items() if k != "parameters"}}
    truncate = flag(options.get("truncate", options.get("truncation")), "truncate", True)
    try:
        texts, single = zero_shot_texts(body["inputs"])
        zero_shot = ZeroShotOptions.parse(options.get("candidate_labels"),
                                          options.get("hypothesis_template") or DEFAULT_TEMPLATE,
                                          options.get("multi_label"))
    except InputError as exc:
        raise invalid(exc.render(HTTP_NAMES).replace("sequences", "inputs").replace("the sequence", "'inputs'")) from None
    pairs = len(texts) * len(zero_shot.labels)
    if pairs > max_client_batch:
        raise RequestError(413, "validation", f"{len(texts)} text(s) × {len(zero_shot.labels)} candidate labels make "
                                              f"{pairs} pairs, each a model row; the limit is {max_client_batch} "
                                              "(--max-client-batch)")
    windows = request_windows(options, facts.windowing, default_window) if facts.windowing is not None else None
    try:
        call = pair_options(facts, truncation=truncate, windows=windows)
    except InputError as exc:
        raise invalid(exc.render(HTTP_NAMES)) from None
    return ZeroShotRequest(texts, single, zero_shot, call, entailment)


ZERO_SHOT_OPTIONS = {
    "candidate_labels": {"oneOf": [{"type": "array", "items": {"type": "string"}, "minItems": 1},
                                   {"type": "string", "description": "comma-separated"}],
                         "description": "zero-shot (a model with an entailment label): the labels to score; the "
                                        "answer is {sequence, labels, scores}, best first"},
    "multi_label": {"type": "boolean", "description": "zero-shot: score each label on its own (default false: "
                                                      "the labels' scores sum to 1)"},
    "hypothesis_template": {"type": ["string", "null"],
                            "description": f"zero-shot: the hypothesis, {{}} for the label (default "
                                           f"{DEFAULT_TEMPLATE!r})"},
}
ZERO_SHOT_ANSWER = {"type": "object", "required": ["sequence", "labels", "scores"], "properties": {
    "sequence": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}},
    "scores": {"type": "array", "items": {"type": "number"}}}}
