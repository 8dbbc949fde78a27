"""Ray Serve's batcher refusing overload before ``@serve.batch``, and the ``serve run`` builder's settings.

``@serve.batch`` runs only inside a Serve replica, so batching, deadlines (504) and overload (429) on
Ray Serve are tested end to end in ``test_serve.py``, whose API tests all run on both engines.
"""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install 'ortpipe[ray]'")

from ortpipe.distributed.online import ServeBatcher  # noqa: E402
from ortpipe.runtime import TextClassifier  # noqa: E402
from ortpipe.serve.batcher import Expired, Overloaded  # noqa: E402
from ortpipe.serve.config import ServeConfig  # noqa: E402

FAR = 3600.0


@pytest.fixture(scope="module")
def clf(bert_bundle):
    return TextClassifier.load(bert_bundle, variant="optimized", threads=1, spinning=False)


def _batcher(clf, calls: list, **limits) -> ServeBatcher:
    def run_model(encodings):
        calls.append(len(encodings))
        return clf.model(clf.tokenizer.collate(encodings))

    settings = {"max_batch_size": 64, "max_batch_tokens": 1024, "max_wait_ms": 20.0, "max_queue": 100, **limits}
    return ServeBatcher(run_model, **settings)


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=60))


def test_a_full_queue_is_overloaded_before_anything_runs(clf):
    async def main():
        batcher = _batcher(clf, [], max_queue=3)
        await batcher.submit(clf.tokenizer.encode(["a", "b", "c", "d"]), time.perf_counter() + FAR)

    with pytest.raises(Overloaded, match="queue limit of 3"):
        _run(main())


def test_settings_given_as_text_are_parsed_or_refused():
    assert ServeConfig.parse({"max_queue": "12", "max_wait_ms": "3"}) == {"max_queue": 12, "max_wait_ms": 3.0}
    with pytest.raises(ValueError, match="unknown setting 'max_qeue'"):
        ServeConfig.parse({"max_qeue": "12"})
    with pytest.raises(ValueError, match="max_queue='x' is not a valid int"):
        ServeConfig.parse({"max_queue": "x"})
