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
from ortpipe.serve.batcher import Overloaded  # noqa: E402
from ortpipe.serve.config import ServeConfig  # noqa: E402

pytestmark = pytest.mark.ray


def test_a_full_queue_is_overloaded_before_anything_runs(bert_bundle):
    tokenizer = TextClassifier.load(bert_bundle, variant="optimized", threads=1).tokenizer
    calls: list[int] = []
    batcher = ServeBatcher(lambda encodings: calls.append(len(encodings)), max_batch_size=64, max_batch_tokens=512,
                           max_wait_ms=1.0, max_queue=3)
    submitted = batcher.submit(tokenizer.encode(["a", "b", "c", "d"]), time.perf_counter() + 60)
    with pytest.raises(Overloaded, match="4 more would pass the queue limit of 3"):
        asyncio.run(asyncio.wait_for(submitted, timeout=30))
    assert calls == [] and batcher.depth == 0


def test_settings_given_as_text_are_parsed_or_refused():
    assert ServeConfig.parse({"max_queue": "12", "max_wait_ms": "3"}) == {"max_queue": 12, "max_wait_ms": 3.0}
    with pytest.raises(ValueError, match="unknown setting 'max_qeue'"):
        ServeConfig.parse({"max_qeue": "12"})
    with pytest.raises(ValueError, match="max_queue='x' is not a valid int"):
        ServeConfig.parse({"max_queue": "x"})
