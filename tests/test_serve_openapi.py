"""The OpenAPI schema tells the truth: schemathesis (a fuzzer no one here wrote) against a real server.

``schemathesis run --checks all`` with a bounded number of examples per operation, against ``ortpipe serve``
with two models, an API key and a model root, on loopback: every documented route, its request bodies, its
statuses and its content types (``/metrics`` is Prometheus text, the refusals ``{error, error_type}``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
if shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None:
    pytest.skip("schemathesis is not installed (it is in the dev extra)", allow_module_level=True)

from ortpipe.benchmarks.serve_load import free_port  # noqa: E402
from ortpipe.benchmarks.serve_load import server as serve_process  # noqa: E402

pytestmark = pytest.mark.server

CONFIG = Path(__file__).parent / "data" / "schemathesis.toml"
EXAMPLES = 25  # per operation and phase: bounded, about half a minute here
SEED = 20261201  # the same cases every run, so that CI does not pass or fail by chance


def test_schemathesis_finds_nothing_the_schema_does_not_say(bundles, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(bundles["bert"], root / "spare")
    port = free_port()
    command = [sys.executable, "-m", "ortpipe.cli", "serve", "--port", str(port), "--threads", "1",
               "--model", f"a={bundles['bert']}", "--model", f"b={bundles['distilbert']}", "--api-key", "fuzz-key",
               "--model-root", str(root), "--max-body", "65536"]
    env = {**os.environ, "ORTPIPE_HOME": str(tmp_path / "home")}
    with serve_process(command, port, env=env, headers={"Authorization": "Bearer fuzz-key"}) as (url, _):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(CONFIG), "run",
             f"{url}/openapi.json", "--header", "Authorization: Bearer fuzz-key", "--checks", "all",
             "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "passed" in done.stdout and "fuzz-key" not in done.stdout
