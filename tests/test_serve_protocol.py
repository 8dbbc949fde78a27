"""``parse_predict`` and ``ServeConfig`` as units: what a body may hold, what a setting may be, the environment."""

from __future__ import annotations

import pytest

from ortpipe.runtime.call import ModelFacts
from ortpipe.serve.config import ServeConfig
from ortpipe.serve.protocol import RequestError, parse_predict
from ortpipe.runtime.windows import window_options


def windowing(window, stride=None, aggregate=None, return_windows=False, truncation=True):
    return window_options(window, stride, aggregate, return_windows, max_length=128, truncation=truncation)


def parse(body, **kwargs):
    facts = ModelFacts("single_label_classification", ("a", "b", "c"), windowing)
    return parse_predict(body, facts, 4, **kwargs)


def test_tei_shapes_and_pipeline_parameters():
    assert parse({"inputs": "a"}).items == ["a"] and parse({"inputs": "a"}).single
    assert parse({"inputs": ["a", "b"]}).items == [("a", "b")]  # TEI: two strings are one pair
    assert parse({"inputs": [["a"], ["a", "b"]]}).items == ["a", ("a", "b")]
    parsed = parse({"inputs": "a", "parameters": {"top_k": 2, "function_to_apply": "sigmoid", "truncation": True}})
    assert (parsed.top_k, parsed.function, parsed.truncate, parsed.nested) == (2, "sigmoid", True, True)
    assert parse({"inputs": "a", "raw_scores": True}).function == "none"
    assert parse({"inputs": "a", "truncate": True, "truncation_direction": "LEFT"}).truncation_direction == "left"


def test_window_fields_and_the_server_default():
    assert parse({"inputs": "a"}).windows is None
    assert parse({"inputs": "a", "window": 32}).windows.stride == 8
    assert parse({"inputs": "a"}, default_window=64).windows.window == 64
    assert parse({"inputs": "a", "window": None}, default_window=64).windows is None
    assert parse({"inputs": "a", "truncate": False}, default_window=64).windows.window == 64  # TEI's default
    assert parse({"inputs": "a", "parameters": {"window": "auto", "aggregate": "max"}}).windows.aggregate == "max"


@pytest.mark.parametrize("body, status, needle", [
    ([1], 422, "must be a JSON object"),
    ({"texts": "a"}, 422, "no 'inputs'"),
    ({"inputs": "a", "colour": 1}, 422, "unknown field(s) ['colour']"),
    ({"inputs": []}, 422, "empty batch"),
    ({"inputs": ["a"] * 5}, 413, "5 inputs in one request; the limit is 4"),
    ({"inputs": [["a", "b", "c"]]}, 422, "inputs[0]: a list item must be [text] or [text, text_pair]"),
    ({"inputs": 3}, 422, "'inputs' must be a string"),
    ({"inputs": "a", "top_k": 0}, 422, "top_k must be a positive int"),
    ({"inputs": "a", "truncate": "yes"}, 422, "'truncate' must be true or false"),
    ({"inputs": "a", "truncation_direction": "up"}, 422, "'truncation_direction' must be 'right' or 'left'"),
    ({"inputs": "a", "parameters": {"colour": 1}}, 422, "'parameters' must be an object with some of"),
    ({"inputs": "a", "window": 32, "truncate": False}, 422, '"truncate": false cannot be used with "window"'),
    ({"inputs": "a", "stride": 2}, 422, "stride needs window"),
    ({"inputs": "a", "window": 9999}, 422, "window must be an int from 16 to the model's limit of 128"),
])
def test_bad_bodies_are_refused_naming_the_problem(body, status, needle):
    with pytest.raises(RequestError) as caught:
        parse(body)
    assert caught.value.status == status and needle in caught.value.message


@pytest.mark.parametrize("field, value, needle", [
    ("max_queue", 0, "max_queue must be positive, got 0"), ("timeout_ms", -1.0, "timeout_ms must be positive"),
    ("max_wait_ms", -1.0, "max_wait_ms must be ≥ 0"), ("port", 70000, "port within 0..65535"),
    ("window", "big", "window must be off, auto or a number of tokens, got 'big'"),
    ("concurrent_batches", -1, "concurrent_batches must be ≥ 0 (0: auto), got -1"),
])
def test_serve_config_check_names_the_bad_setting(field, value, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        ServeConfig(**{field: value}).check()
    assert ServeConfig(window="auto").check().default_window == "auto"
    assert ServeConfig(window="256").default_window == 256 and ServeConfig().default_window is None


def test_ortpipe_environment_defaults_are_parsed_to_each_fields_type():
    found = ServeConfig.env_defaults({"ORTPIPE_MAX_QUEUE": "100", "ORTPIPE_TIMEOUT_MS": "2.5",
                                      "ORTPIPE_WINDOW": "auto", "ORTPIPE_UNRELATED": "x", "HOME": "/"})
    assert found == {"max_queue": 100, "timeout_ms": 2.5, "window": "auto"}
    with pytest.raises(ValueError, match="ORTPIPE_MAX_QUEUE='many' is not a valid int"):
        ServeConfig.env_defaults({"ORTPIPE_MAX_QUEUE": "many"})
    with pytest.raises(ValueError, match="unknown setting 'colour'"):
        ServeConfig.parse({"colour": "red"})


def test_input_errors_carry_their_item_and_each_protocol_names_it_its_own_way():
    from ortpipe.runtime.errors import InputError
    from ortpipe.runtime.inputs import normalize_inputs
    from ortpipe.serve.protocol import HTTP_NAMES

    with pytest.raises(InputError) as caught:
        normalize_inputs(["fine", {"text": "ok", "text_pair": 3}])
    error = caught.value
    assert (error.index, str(error)) == (1, "input[1]: 'text_pair' must be a str, got int")
    assert error.render(HTTP_NAMES) == "inputs[1]: 'text_pair' must be a str, got int"
    with pytest.raises(RequestError, match=r"inputs\[1\]: 'text_pair' must be a str"):
        parse({"inputs": ["fine", {"text": "ok", "text_pair": 3}]})
    assert str(InputError("a plain message")) == "a plain message" == InputError("a plain message").render(HTTP_NAMES)
