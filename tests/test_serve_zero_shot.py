"""Zero-shot over HTTP: the Hugging Face Inference API's body on a real ``ortpipe serve``, and its client."""

from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from servers import serving  # noqa: E402
from ortpipe.runtime import ZeroShotClassifier  # noqa: E402
from ortpipe.serve.zero_shot_protocol import is_zero_shot  # noqa: E402

pytestmark = pytest.mark.server

TEXTS = ["I love this movie, the actors are wonderful.", "Stocks fell sharply after the bank raised rates."]
LABELS = ["cinema", "politics", "economy"]


@pytest.fixture(scope="module")
def server(nli_models, bert_bundle, tmp_path_factory):
    """An NLI model (the default) beside a plain classifier, in one server."""
    with serving(tmp_path_factory.mktemp("home"), "--model", f"nli={nli_models['bert'][1]}", "--model",
                 f"plain={bert_bundle}", "--variant", "optimized", "--max-client-batch", "8") as (url, _, _log):
        yield url


@pytest.fixture(scope="module")
def zs(nli_models):
    return ZeroShotClassifier.load(nli_models["bert"][1], variant="optimized", threads=1)


def _close(ours, theirs):
    for a, b in zip(ours if isinstance(ours, list) else [ours], theirs if isinstance(theirs, list) else [theirs]):
        assert a["sequence"] == b["sequence"] and a["labels"] == b["labels"], (a, b)
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-6)


def test_a_body_is_zero_shot_when_it_names_candidate_labels():
    assert is_zero_shot({"inputs": "x", "parameters": {"candidate_labels": ["a"]}})
    assert is_zero_shot({"inputs": "x", "candidate_labels": "a,b"})
    assert not is_zero_shot({"inputs": "x", "parameters": {"top_k": 1}}) and not is_zero_shot(["x"])


def test_the_inference_client_gets_the_in_process_scores(server, zs):
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(model=server, timeout=30)
    got = client.zero_shot_classification(TEXTS[0], LABELS)
    expected = zs(TEXTS[0], LABELS)
    assert [item.label for item in got] == expected["labels"]
    assert [item.score for item in got] == pytest.approx(expected["scores"], abs=1e-6)
    multi = client.zero_shot_classification(TEXTS[1], LABELS, multi_label=True, hypothesis_template="About {}.")
    expected = zs(TEXTS[1], LABELS, multi_label=True, hypothesis_template="About {}.")
    assert [item.score for item in multi] == pytest.approx(expected["scores"], abs=1e-6)


def test_a_list_of_texts_on_the_model_route_gets_a_list(server, zs):
    body = {"inputs": TEXTS, "parameters": {"candidate_labels": LABELS, "hypothesis_template": None}}
    response = httpx.post(f"{server}/models/nli/predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    _close(response.json(), zs(TEXTS, LABELS))
    top_level = httpx.post(f"{server}/predict", json={"inputs": TEXTS[1], "candidate_labels": "economy, cinema"},
                           timeout=30).json()
    _close(top_level, zs(TEXTS[1], "economy, cinema"))


def test_info_and_models_say_which_task_each_model_serves(server):
    assert httpx.get(f"{server}/info", timeout=10).json()["tasks"] == ["text-classification",
                                                                       "zero-shot-classification"]
    tasks = {row["name"]: row["tasks"] for row in httpx.get(f"{server}/models", timeout=10).json()["models"]}
    assert tasks == {"nli": ["text-classification", "zero-shot-classification"], "plain": ["text-classification"]}
    schema = httpx.get(f"{server}/openapi.json", timeout=10).json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "candidate_labels" in body["properties"]["parameters"]["properties"]


@pytest.mark.parametrize("body,status,needle", [
    ({"inputs": "x", "parameters": {"candidate_labels": []}}, 422, "candidate_labels must be a non-empty list"),
    ({"inputs": "x", "parameters": {"candidate_labels": ["a", "b", "a"]}}, 422, "repeated: ['a']"),
    ({"inputs": "x", "parameters": {"candidate_labels": ["a"], "hypothesis_template": "No slot."}}, 422,
     "has no {} where the label goes"),
    ({"inputs": "x", "parameters": {"candidate_labels": ["word " * 200]}}, 422, "shorten the label"),
    ({"inputs": {"text": "a", "text_pair": "b"}, "parameters": {"candidate_labels": ["a"]}}, 422, "text pair"),
    ({"inputs": ["a", "b", "c"], "parameters": {"candidate_labels": ["x", "y", "z"]}}, 413,
     "3 text(s) × 3 candidate labels make 9 pairs, each a model row; the limit is 8 (--max-client-batch)"),
    ({"inputs": "x", "parameters": {"candidate_labels": ["a"], "top_k": 1}}, 422, "unknown: ['top_k']"),
    ({"inputs": "x", "parameters": {"candidate_labels": ["a"], "multi_label": "yes"}}, 422, "multi_label must be"),
])
def test_bad_zero_shot_bodies_are_refused_naming_the_problem(server, body, status, needle):
    response = httpx.post(f"{server}/predict", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]


def test_a_zero_shot_body_to_a_model_without_an_entailment_label_is_a_422(server):
    body = {"inputs": "x", "parameters": {"candidate_labels": ["a", "b"]}}
    response = httpx.post(f"{server}/models/plain/predict", json=body, timeout=30)
    assert response.status_code == 422
    assert "needs an NLI model" in response.json()["error"] and "no entailment label" in response.json()["error"]
