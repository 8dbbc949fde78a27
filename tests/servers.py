"""One way for tests to start a real ``ortpipe serve``: a subprocess on 127.0.0.1, a free port, stderr in a file."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from ortpipe.benchmarks.reload_memory import rss_mb  # noqa: F401 (for the tests that read a server's memory)
from ortpipe.benchmarks.serve_load import free_port
from ortpipe.benchmarks.serve_load import server as serve_process


@contextmanager
def serving(home: Path, *flags: str, headers: dict | None = None, threads: int = 2, env: dict | None = None,
            ready_timeout: float = 90):
    """``ortpipe serve FLAGS`` once ready; yields (url, process, the path of its stderr log).

    ``headers`` go with each readiness poll (an ``Authorization`` for a server started with ``--api-key``).
    """
    port = free_port()
    command = [sys.executable, "-m", "ortpipe.cli", "serve", "--port", str(port), "--threads", str(threads),
               *flags]
    home.mkdir(parents=True, exist_ok=True)
    log = home / "stderr.log"
    environ = {**os.environ, "ORTPIPE_HOME": str(home), **(env or {})}
    with serve_process(command, port, ready_timeout=ready_timeout, env=environ, headers=headers,
                       log=log) as (url, process):
        yield url, process, log


def metric_sum(url: str, family: str, label: str = "", text: str | None = None) -> float:
    """The sum of a metric family's samples whose labels contain ``label``, from ``text`` or a fresh scrape."""
    import httpx

    total = 0.0
    for line in (text if text is not None else httpx.get(f"{url}/metrics", timeout=10).text).splitlines():
        name, _, rest = line.partition("{")
        if (name == family or line.startswith(family + " ")) and label in rest:
            total += float(line.rsplit(" ", 1)[1])
    return total
