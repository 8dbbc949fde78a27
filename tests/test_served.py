"""The served-model set as an object (serve/served.py), driven in-process with real bundles."""

from __future__ import annotations

import asyncio
import shutil

import pytest

pytest.importorskip("fastapi")

from ortpipe.runtime import TextClassifier  # noqa: E402
from ortpipe.serve import create_app  # noqa: E402
from ortpipe.serve.errors import ServeError  # noqa: E402

KEYS = ["k" * 24]


def test_a_bundle_swapped_for_a_link_while_it_loads_is_refused(bundles, tmp_path):
    """Issue 27, case 6: the path is resolved and checked under the lock, and again after the load."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    inside = root / "m"
    shutil.copytree(bundles["bert"], inside)
    shutil.copytree(bundles["distilbert"], outside)

    def swapping_loader(path, name, old):
        inside.rename(tmp_path / "moved")  # what an attacker does between the check and the open
        inside.symlink_to(outside)
        return TextClassifier.load(path)

    app = create_app({"a": TextClassifier.load(bundles["bert"])}, api_keys=KEYS, model_roots=[str(root)],
                     loader=swapping_loader)
    served = app.state.served

    async def load():
        with pytest.raises(ServeError) as refused:
            await served.load("x", str(inside))
        return refused.value

    refused = asyncio.run(asyncio.wait_for(load(), timeout=60))
    assert refused.status == 403, refused
    assert "x" not in served.predictors


def test_a_second_load_of_a_busy_name_is_409_and_unload_of_a_missing_one_404(bundles, tmp_path):
    """Issue 27, case 7: one load per name at a time; two unloads during a load never give a 500."""
    app = create_app({"a": TextClassifier.load(bundles["bert"]), "b": TextClassifier.load(bundles["distilbert"])},
                     api_keys=KEYS, model_roots=[str(bundles["bert"].parent)])
    served = app.state.served

    async def race():
        first = asyncio.ensure_future(served.load("b", None))
        await asyncio.sleep(0)
        outcomes = await asyncio.gather(served.load("b", None), served.unload("b"), served.unload("b"),
                                        return_exceptions=True)
        return await first, outcomes

    done, outcomes = asyncio.run(asyncio.wait_for(race(), timeout=60))
    assert done["replaced"] is True
    assert [getattr(o, "status", None) for o in outcomes] == [409, 409, 409]


def test_the_servers_concurrent_batches_do_not_make_a_models_limits_differ():
    from ortpipe.serve.config import ServeConfig
    from ortpipe.serve.served import _same_limits

    resolved = ServeConfig(concurrent_batches=2)
    assert _same_limits(resolved, ServeConfig())  # SIGHUP re-reads 0 (auto): the same limits
    assert not _same_limits(resolved, ServeConfig(max_queue=7))
