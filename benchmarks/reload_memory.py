"""A server's memory over many reloads: does a retired model version give its memory back?

    python -m ortpipe.benchmarks.reload_memory --bundle bundles/my-model --reloads 60

Starts ``ortpipe serve`` with the bundle as two models (``a`` and ``b``) and an API key on a free loopback
port, reloads ``b`` with ``POST /models/b/load {}`` back to back, and prints the server's resident memory
(VmRSS) after the first reload and every ``--every`` reloads after it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

from ortpipe.benchmarks.http_client import free_port, server
from ortpipe.runtime.machine import describe_machine, isa_summary


def rss_mb(pid: int) -> float:
    """A process's resident memory now, in MB (VmRSS, from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def measure(bundle: str, reloads: int, every: int) -> dict:
    import httpx

    key = secrets.token_hex(16)
    auth = {"Authorization": f"Bearer {key}"}
    port = free_port()
    command = [sys.executable, "-m", "ortpipe.cli", "serve", "--port", str(port), "--threads", "2",
               "--model", f"a={bundle}", "--model", f"b={bundle}", "--api-key", key]
    found = []
    with server(command, port, headers=auth) as (url, process):
        for done in range(1, reloads + 1):
            response = httpx.post(f"{url}/models/b/load", json={}, headers=auth, timeout=120)
            response.raise_for_status()
            if done == 1 or done % every == 0:
                time.sleep(0.3)  # the retired version is freed once idle
                found.append({"reloads": done, "rss_mb": round(rss_mb(process.pid), 1)})
    first = found[0]["rss_mb"]
    return {"bundle": bundle, "machine": isa_summary(describe_machine()), "rss": found,
            "last_over_first": round(found[-1]["rss_mb"] / first, 3),
            "max_over_first": round(max(r["rss_mb"] for r in found) / first, 3)}


def main(argv=None) -> int:
    from ortpipe.runtime import default_bundle_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", help="bundle folder (default: the default bundle)")
    parser.add_argument("--reloads", type=int, default=60)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.bundle or str(default_bundle_dir()), args.reloads, args.every), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
