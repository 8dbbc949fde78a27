"""Load-test ``ortpipe serve`` on loopback against the alternatives, at several concurrencies.

    python -m ortpipe.benchmarks.serve_load --bundle B --data sst2/test.tsv --json serve.json

Servers, each started in its own process on a free 127.0.0.1 port:

- ``ortpipe-serve``: ``ortpipe serve`` as shipped (dynamic batching);
- ``ortpipe-unbatched``: the same with ``--max-batch-size 1 --max-wait-ms 0``
  (one session call per request);
- ``seed-fastapi``: FastAPI + ``transformers.pipeline`` per request
  (:mod:`ortpipe.benchmarks.seed_server`).

Each client sends one SST-2 sentence per request, back to back, on its own
keep-alive connection (:class:`RawHttpClient`; ``--client aiohttp`` for
aiohttp); a level ends after ``--requests`` requests or ``--seconds``,
whichever comes first. The in-process figures of the same variant (one
sentence; every sentence once; all sentences length-sorted at batch 32) are
measured too, as the yardsticks, and measured again alternating with the
server (:func:`paired_concurrency_1`, :func:`paired_throughput`), since the
machine's speed drifts between levels.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from ortpipe.benchmarks.http_client import RawHttpClient, free_port, run_client, server  # noqa: F401 (re-exported)
from ortpipe.benchmarks.workloads import percentiles
from ortpipe.export.data import read_labelled_tsv, sst2_dir
from ortpipe.runtime.machine import describe_machine, isa_summary
from ortpipe.runtime.timing import median_ms


async def _load(url: str, texts: list[str], concurrency: int, requests: int, seconds: float,
                client: str = "raw") -> dict:
    """``concurrency`` clients, each posting one text at a time, until ``requests`` or ``seconds`` run out.

    ``client="raw"``: :class:`RawHttpClient`, one connection per client. ``client="aiohttp"``: an aiohttp
    session (what an app would use; it costs the shared cores about 5 times more per request).
    Not httpx: its async pool itself tops out near 120 requests/s at 64 connections here.
    """
    latencies: list[float] = []
    errors = 0
    next_index = 0

    async def client_loop(post, stop_at: float) -> None:
        nonlocal next_index, errors
        while next_index < requests and time.perf_counter() < stop_at:
            text = texts[next_index % len(texts)]
            next_index += 1
            start = time.perf_counter()
            if await post(text) != 200:
                errors += 1
            latencies.append(time.perf_counter() - start)

    async def run(posts: list) -> float:
        await asyncio.gather(*(post(text) for post, text in zip(posts, texts)))  # warm the connections
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(post, started + seconds) for post in posts))
        return time.perf_counter() - started

    if client == "raw":
        connections = [await RawHttpClient.connect(url) for _ in range(concurrency)]

        try:
            elapsed = await run([partial(_post_text, c) for c in connections])
        finally:
            for connection in connections:
                connection.close()
    elif client == "aiohttp":
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            async def post(text: str) -> int:
                async with session.post(f"{url}/predict", json={"inputs": text}) as response:
                    await response.read()
                    return response.status
            elapsed = await run([post] * concurrency)
    else:
        raise ValueError(f"client must be raw or aiohttp, got {client!r}")
    return {**percentiles(latencies), "sentences_per_s": len(latencies) / elapsed, "requests": len(latencies),
            "errors": errors, "concurrency": concurrency, "client": client}


async def _post_text(connection: RawHttpClient, text: str) -> int:
    return (await connection.post_json("/predict", {"inputs": text}))[0]


def seconds_each(clf, texts: list[str]) -> list[float]:
    """Seconds of one in-process call per text, in order: what a concurrency-1 client would wait less HTTP."""
    seconds = []
    for text in texts:
        start = time.perf_counter()
        clf(text)
        seconds.append(time.perf_counter() - start)
    return seconds


def in_process(clf, texts: list[str]) -> dict:
    """The yardsticks: one sentence (the first) repeated; every sentence once, one call each, in the order a
    concurrency-1 client sends them (p50); all sentences length-sorted at batch 32 (sentences/s)."""
    bulk_ms = median_ms(lambda: clf(texts, batch_size=32), repeats=3)
    each = seconds_each(clf, texts)
    return {"variant": clf.variant, "single_p50_ms": median_ms(lambda: clf(texts[0]), 300, warmup=20),
            "sentences_p50_ms": float(np.median(each) * 1000),
            "sorted_batch32_sentences_per_s": len(texts) / bulk_ms * 1000}


# after in-process calls, ONNX Runtime's threads (spinning, as in-process defaults) busy-wait a while;
# the server's turn starts once they have parked, so they take no core from it
SETTLE_S = 0.05


def paired_concurrency_1(url: str, clf, texts: list[str], chunk: int = 50) -> dict:
    """Every sentence once through the server and once in-process, alternating in chunks of ``chunk``.

    The machine's speed drifts by 10-30 % over minutes here; alternating puts the same drift into both
    sides, so their difference is the server's own cost per request.
    """
    served, local = [], []

    async def send(connection, batch: list[str]) -> None:
        for text in batch:
            start = time.perf_counter()
            status, _ = await connection.post_json("/predict", {"inputs": text})
            if status != 200:
                raise RuntimeError(f"the server answered {status} to a paired request")
            served.append(time.perf_counter() - start)

    async def run() -> None:
        connection = await RawHttpClient.connect(url)
        try:
            for first in range(0, len(texts), chunk):
                batch = texts[first:first + chunk]
                await send(connection, batch)
                local.extend(seconds_each(clf, batch))
                await asyncio.sleep(SETTLE_S)
        finally:
            connection.close()

    run_client(run())
    server_ms, local_ms = float(np.median(served) * 1000), float(np.median(local) * 1000)
    return {"server_p50_ms": server_ms, "in_process_p50_ms": local_ms, "over_in_process_ms": server_ms - local_ms}


def paired_throughput(url: str, clf, texts: list[str], concurrency: int, rounds: int = 5,
                      client: str = "raw") -> dict:
    """Sentences/s at ``concurrency`` against in-process length-sorted batch 32, alternating ``rounds`` times.

    As :func:`paired_concurrency_1`: the drift of the machine falls on both sides; the ratio is the median
    of the rounds' ratios.
    """
    served, local = [], []
    for _ in range(rounds):
        served.append(run_client(_load(url, texts, concurrency, len(texts), 60.0, client))["sentences_per_s"])
        start = time.perf_counter()
        clf(texts, batch_size=32)
        local.append(len(texts) / (time.perf_counter() - start))
        time.sleep(SETTLE_S)
    return {"server_sentences_per_s": served, "in_process_sentences_per_s": local,
            "ratio": float(np.median([a / b for a, b in zip(served, local)]))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--variant", help="default: what load() picks on this machine")
    parser.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint for seed-fastapi "
                                                        "(default: rebuilt for the default bundle)")
    parser.add_argument("--data", type=Path, default=sst2_dir() / "test.tsv")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="the servers' threads (the in-process yardsticks load as they do by default)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--requests", type=int, default=872, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per level at most")
    parser.add_argument("--servers", nargs="+", default=["ortpipe-serve", "ortpipe-unbatched", "seed-fastapi"])
    parser.add_argument("--spinning", action="store_true", help="start the ortpipe servers with --spinning "
                                                                 "(their threads busy-wait after each call)")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="the load generator's HTTP client (raw: a minimal one, the least CPU taken from "
                             "the server; aiohttp: what an app would use)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from ortpipe.runtime import TextClassifier

    texts = read_labelled_tsv(args.data).texts
    clf = TextClassifier.load(args.bundle, variant=args.variant)  # the yardstick: in-process as it loads by default
    reference = in_process(clf, texts)
    serve = [sys.executable, "-m", "ortpipe.cli", "serve", "--bundle", str(args.bundle),
             "--threads", str(args.threads)] + (["--variant", args.variant] if args.variant else []) + (
                ["--spinning"] if args.spinning else [])
    report = {"machine": describe_machine(), "threads": args.threads, "spinning": args.spinning,
              "client": args.client, "data": f"{args.data.name} ({len(texts)})",
              "in_process": reference, "servers": {}}
    for name in args.servers:
        port = free_port()
        with server(_server_command(name, args, serve, port), port) as (url, _):
            levels = {}
            for concurrency in args.concurrency:
                levels[str(concurrency)] = run_client(_load(url, texts, concurrency, args.requests, args.seconds,
                                                            args.client))
                print(name, concurrency, json.dumps(levels[str(concurrency)]), file=sys.stderr, flush=True)
            if name == "ortpipe-serve" and 64 in args.concurrency:
                levels["64"]["paired"] = paired_throughput(url, clf, texts, 64, client=args.client)
                print(name, "paired", json.dumps(levels["64"]["paired"]), file=sys.stderr, flush=True)
            if name != "seed-fastapi" and 1 in args.concurrency:
                levels["1"]["paired"] = paired_concurrency_1(url, clf, texts)
                print(name, "paired", json.dumps(levels["1"]["paired"]), file=sys.stderr, flush=True)
        report["servers"][name] = levels
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _server_command(name: str, args, serve: list[str], port: int) -> list[str]:
    """The command that starts server ``name`` on ``port``: the seed's PyTorch server, or ``ortpipe serve``
    (``ortpipe-unbatched``: one text per model call)."""
    if name == "seed-fastapi":
        from ortpipe.benchmarks.paths import checkpoint_for
        from ortpipe.runtime.manifest import read_manifest

        checkpoint = args.checkpoint or checkpoint_for(args.bundle, read_manifest(args.bundle))
        return [sys.executable, "-m", "ortpipe.benchmarks.seed_server", "--checkpoint", str(checkpoint),
                "--port", str(port), "--threads", str(args.threads)]
    extra = ["--max-batch-size", "1", "--max-wait-ms", "0"] if name == "ortpipe-unbatched" else []
    return serve + ["--port", str(port)] + extra


def format_report(report: dict) -> str:
    """A Markdown table: one row per server and concurrency, with the in-process yardsticks."""
    ref = report["in_process"]
    lines = ["| server | concurrency | p50 ms | p99 ms | sentences/s | errors |", "|---|---|---|---|---|---|"]
    for name, levels in report["servers"].items():
        for concurrency, r in levels.items():
            lines.append(f"| {name} | {concurrency} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['sentences_per_s']:.0f} | {r['errors']} |")
    paired = [f"{name}: {r['1']['paired']['server_p50_ms']:.2f} ms against {r['1']['paired']['in_process_p50_ms']:.2f} "
              f"in-process, +{r['1']['paired']['over_in_process_ms']:.2f} ms"
              for name, r in report["servers"].items() if "paired" in r.get("1", {})]
    each = f", each sentence once p50 {ref['sentences_p50_ms']:.2f} ms" if "sentences_p50_ms" in ref else ""
    lines += ["", f"In-process, same variant ({ref['variant']}): one sentence p50 {ref['single_p50_ms']:.2f} ms{each}; "
                  f"all sentences length-sorted at batch 32: {ref['sorted_batch32_sentences_per_s']:.0f} sentences/s.",
              f"Machine: {isa_summary(report['machine'])}, {report['machine']['cores']} cores; server threads "
              f"{report['threads']}{' (--spinning)' if report.get('spinning') else ''}; client "
              f"({report.get('client', 'aiohttp')}) on the same machine; data {report['data']}."]
    if "paired" in report["servers"].get("ortpipe-serve", {}).get("64", {}):
        r = report["servers"]["ortpipe-serve"]["64"]["paired"]
        lines.append(f"Concurrency 64, ortpipe-serve and in-process sorted batch 32 alternating "
                     f"{len(r['server_sentences_per_s'])} times: "
                     f"{' / '.join(f'{v:.0f}' for v in r['server_sentences_per_s'])} against "
                     f"{' / '.join(f'{v:.0f}' for v in r['in_process_sentences_per_s'])} sentences/s, "
                     f"median ratio {r['ratio'] * 100:.0f} %.")
    if paired:
        lines.append("Concurrency 1, every sentence once, server and in-process alternating in chunks of 50 "
                     "(p50): " + "; ".join(paired) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
