"""Load-test ``ortpipe serve`` on loopback against the alternatives, at several concurrencies.

    python -m ortpipe.benchmarks.serve_load --bundle B --data sst2/test.tsv --json serve.json

Servers, each started in its own process on a free 127.0.0.1 port:

- ``ortpipe-serve``: ``ortpipe serve`` as shipped (dynamic batching);
- ``ortpipe-unbatched``: the same with ``--max-batch-size 1 --max-wait-ms 0``
  (one session call per request);
- ``seed-fastapi``: FastAPI + ``transformers.pipeline`` per request
  (:mod:`ortpipe.benchmarks.seed_server`).

Each client sends one SST-2 sentence per request, back to back; a level ends
after ``--requests`` requests or ``--seconds``, whichever comes first. The
in-process figures of the same variant (one sentence; all sentences
length-sorted at batch 32) are measured too, as the yardsticks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ortpipe.benchmarks.workloads import percentiles
from ortpipe.export.data import read_labelled_tsv, sst2_dir
from ortpipe.runtime.machine import describe_machine, isa_summary
from ortpipe.runtime.timing import median_ms


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(command: list[str], port: int, ready_timeout: float = 120.0, env: dict | None = None):
    """Run ``command`` (a server on 127.0.0.1:``port``); yield (url, process) once ``/ready`` answers 200.

    The process is terminated (SIGTERM, then SIGKILL after 30 s) on the way out.
    """
    import httpx

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited: {process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:4]} not ready within {ready_timeout} s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def _load(url: str, texts: list[str], concurrency: int, requests: int, seconds: float) -> dict:
    """``concurrency`` clients, each posting one text at a time, until ``requests`` or ``seconds`` run out.

    aiohttp, not httpx: httpx's async pool itself tops out near 120 requests/s at 64 connections here
    (measured against ``GET /health``), which would measure the client instead of the server.
    """
    import aiohttp

    latencies: list[float] = []
    errors = 0
    next_index = 0
    stop_at = time.perf_counter() + seconds

    async def post(session, text: str) -> int:
        async with session.post(f"{url}/predict", json={"inputs": text}) as response:
            await response.read()
            return response.status

    async def client(session) -> None:
        nonlocal next_index, errors
        while next_index < requests and time.perf_counter() < stop_at:
            text = texts[next_index % len(texts)]
            next_index += 1
            start = time.perf_counter()
            if await post(session, text) != 200:
                errors += 1
            latencies.append(time.perf_counter() - start)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        await asyncio.gather(*(post(session, text) for text in texts[:concurrency]))  # warm the connections
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {**percentiles(latencies), "sentences_per_s": len(latencies) / elapsed, "requests": len(latencies),
            "errors": errors, "concurrency": concurrency}


def in_process(bundle: Path, variant: str | None, threads: int, texts: list[str]) -> dict:
    """The yardsticks: one sentence (the first) repeated; every sentence once, one call each, in the order a
    concurrency-1 client sends them (p50); all sentences length-sorted at batch 32 (sentences/s)."""
    from ortpipe.runtime import TextClassifier

    clf = TextClassifier.load(bundle, variant=variant, threads=threads)
    bulk_ms = median_ms(lambda: clf(texts, batch_size=32), repeats=3)
    each = []
    for text in texts:
        start = time.perf_counter()
        clf(text)
        each.append(time.perf_counter() - start)
    return {"variant": clf.variant, "single_p50_ms": median_ms(lambda: clf(texts[0]), 300, warmup=20),
            "sentences_p50_ms": float(np.median(each) * 1000),
            "sorted_batch32_sentences_per_s": len(texts) / bulk_ms * 1000}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--variant", help="default: what load() picks on this machine")
    parser.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint for seed-fastapi "
                                                        "(default: rebuilt for the default bundle)")
    parser.add_argument("--data", type=Path, default=sst2_dir() / "test.tsv")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--requests", type=int, default=872, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per level at most")
    parser.add_argument("--servers", nargs="+", default=["ortpipe-serve", "ortpipe-unbatched", "seed-fastapi"])
    parser.add_argument("--spinning", action="store_true", help="start the ortpipe servers with --spinning")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    texts = read_labelled_tsv(args.data).texts
    reference = in_process(args.bundle, args.variant, args.threads, texts)
    serve = [sys.executable, "-m", "ortpipe.runtime.cli", "serve", "--bundle", str(args.bundle),
             "--threads", str(args.threads)] + (["--variant", args.variant] if args.variant else []) + (
                ["--spinning"] if args.spinning else [])
    report = {"machine": describe_machine(), "threads": args.threads, "spinning": args.spinning,
              "data": f"{args.data.name} ({len(texts)})",
              "in_process": reference, "servers": {}}
    for name in args.servers:
        port = free_port()
        if name == "seed-fastapi":
            from ortpipe.benchmarks.paths import checkpoint_for
            from ortpipe.runtime.manifest import read_manifest

            checkpoint = args.checkpoint or checkpoint_for(args.bundle, read_manifest(args.bundle))
            command = [sys.executable, "-m", "ortpipe.benchmarks.seed_server", "--checkpoint", str(checkpoint),
                       "--port", str(port), "--threads", str(args.threads)]
        else:
            extra = ["--max-batch-size", "1", "--max-wait-ms", "0"] if name == "ortpipe-unbatched" else []
            command = serve + ["--port", str(port)] + extra
        with server(command, port) as (url, _):
            levels = {}
            for concurrency in args.concurrency:
                levels[str(concurrency)] = asyncio.run(_load(url, texts, concurrency, args.requests, args.seconds))
                print(name, concurrency, json.dumps(levels[str(concurrency)]), file=sys.stderr, flush=True)
        report["servers"][name] = levels
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def format_report(report: dict) -> str:
    """A Markdown table: one row per server and concurrency, with the in-process yardsticks."""
    ref = report["in_process"]
    lines = ["| server | concurrency | p50 ms | p99 ms | sentences/s | errors |", "|---|---|---|---|---|---|"]
    for name, levels in report["servers"].items():
        for concurrency, r in levels.items():
            lines.append(f"| {name} | {concurrency} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['sentences_per_s']:.0f} | {r['errors']} |")
    each = f", each sentence once p50 {ref['sentences_p50_ms']:.2f} ms" if "sentences_p50_ms" in ref else ""
    lines += ["", f"In-process, same variant ({ref['variant']}): one sentence p50 {ref['single_p50_ms']:.2f} ms{each}; "
                  f"all sentences length-sorted at batch 32: {ref['sorted_batch32_sentences_per_s']:.0f} sentences/s.",
              f"Machine: {isa_summary(report['machine'])}, {report['machine']['cores']} cores; server threads "
              f"{report['threads']}{' (spinning)' if report.get('spinning') else ''}; client (aiohttp) on the same "
              f"machine; data {report['data']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
