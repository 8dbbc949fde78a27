"""vLLM's ``/classify`` (and ``/v1/classify``) on a real ``ortpipe serve``: the same scores as ``/predict``."""

from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from servers import serving  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from ortpipe.runtime import TextClassifier  # noqa: E402
from ortpipe.serve.classify_api import classify_answer, classify_error, parse_classify  # noqa: E402
from ortpipe.serve.protocol import RequestError  # noqa: E402

pytestmark = pytest.mark.server

TEXTS = ["This course is amazing!", "dull and long", "not good at all, I want my money back"]


@pytest.fixture(scope="module")
def server(bert_bundle, tmp_path_factory):
    with serving(tmp_path_factory.mktemp("home"), "--model", f"tiny={bert_bundle}", "--variant", "optimized",
                 "--max-client-batch", "4") as (url, _, _log):
        yield url


def test_parse_takes_a_string_or_a_list_and_only_minus_one_as_a_cut():
    assert parse_classify({"input": "a"}) == (["a"], False)
    assert parse_classify({"input": ["a", "b"], "user": "u", "priority": 3, "truncate_prompt_tokens": -1}) == (
        ["a", "b"], True)
    for body, needle in (([], "JSON object"), ({}, "no 'input'"), ({"input": []}, "an empty list"),
                         ({"input": [1, 2]}, "token ids are not taken"), ({"input": "a", "encoding": 1}, "unknown"),
                         ({"input": "a", "truncate_prompt_tokens": 5}, "may be null")):
        with pytest.raises(RequestError) as caught:
            parse_classify(body)
        assert needle in caught.value.message and caught.value.status == 422


def test_the_answer_and_errors_have_vllms_shape():
    answer = classify_answer("m", ["NEG", "POS"], [[0.25, 0.75]], 7)
    assert answer["id"].startswith("classify-") and answer["object"] == "list" and answer["model"] == "m"
    assert answer["data"] == [{"index": 0, "label": "POS", "probs": [0.25, 0.75], "num_classes": 2}]
    assert answer["usage"] == {"prompt_tokens": 7, "total_tokens": 7, "completion_tokens": 0,
                               "prompt_tokens_details": None}
    assert classify_error(422, {"error": "bad"}) == (400, {"error": {"message": "bad", "type": "BadRequestError",
                                                                     "param": None, "code": 400}})
    assert classify_error(404, {"error": "no"})[1]["error"]["type"] == "NotFoundError"


@pytest.mark.parametrize("route", ["/classify", "/v1/classify"])
def test_classify_gives_predicts_probabilities_in_label_order_and_the_real_token_count(server, bert_bundle, route):
    response = httpx.post(f"{server}{route}", json={"model": "tiny", "input": TEXTS}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    predicted = httpx.post(f"{server}/predict", json={"inputs": [[t] for t in TEXTS]}, timeout=30).json()
    clf = TextClassifier.load(bert_bundle, variant="optimized", threads=1)
    assert [row["index"] for row in body["data"]] == [0, 1, 2] and body["model"] == "tiny"
    for row, labels in zip(body["data"], predicted):
        scores = {entry["label"]: entry["score"] for entry in labels}
        assert row["probs"] == [scores[label] for label in clf.labels]  # the same numbers, in id2label order
        assert row["label"] == labels[0]["label"] and row["num_classes"] == len(clf.labels)
    tokenizer = Tokenizer.from_file(str(bert_bundle / "tokenizer.json"))  # the bundle's, read on its own
    tokens = sum(len(tokenizer.encode(text).ids) for text in TEXTS)
    assert body["usage"]["prompt_tokens"] == tokens == body["usage"]["total_tokens"]
    single = httpx.post(f"{server}{route}", json={"input": TEXTS[0]}, timeout=30).json()
    assert single["data"][0]["probs"] == body["data"][0]["probs"]


@pytest.mark.parametrize("body,status,needle", [
    ({"input": ["a"] * 5}, 413, "the limit is 4"),
    ({"input": "word " * 500}, 400, "more than the model's limit"),
    ({"inputs": "a"}, 400, "unknown field(s) ['inputs']"),
    ({"model": "nope", "input": "a"}, 404, "nope"),
])
def test_refusals_come_in_vllms_error_body(server, body, status, needle):
    response = httpx.post(f"{server}/classify", json=body, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["code"] == status and error["type"].endswith("Error")


def test_minus_one_cuts_a_long_text_to_the_models_limit(server):
    response = httpx.post(f"{server}/classify", json={"input": "word " * 500, "truncate_prompt_tokens": -1},
                          timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == 128  # the tiny model's limit


def test_the_schema_documents_classify(server):
    paths = httpx.get(f"{server}/openapi.json", timeout=10).json()["paths"]
    assert {"/classify", "/v1/classify"} <= set(paths)
    assert "400" in paths["/classify"]["post"]["responses"]
