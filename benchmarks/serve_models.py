"""One server, many models: fairness behind a long request, shared cores, an idle model's cost, RSS per model.

    python -m ortpipe.benchmarks.serve_models --json serve_models.json

Every server is ``ortpipe serve`` in a subprocess on loopback, with the default
bundle (as ``load()`` picks it) under one or more names, 2 threads, the
default limits. Measured:

- **fairness**: single-sentence requests one after another, idle, then while
  a request of 256 texts of about 510 tokens (``truncate``) runs on the same
  model and on another one: p50/p99, against the idle p99 plus two model calls
  at the token budget (one 512-token call, timed in-process);
- **shared cores**: SST-2 sentences from 64 clients (32 per model when two are
  served), sentences/s, one model alone against two models at once;
- **idle model**: the server's CPU (``/proc/PID/stat``) over ``--idle-s`` with
  a second model loaded and nothing sent, as a share of one core;
- **RSS** of the server process (``VmRSS``) with 1, 2 and 3 models loaded;
- **CPU efficiency**: the server's CPU-seconds per 1,000 sentences at
  concurrency 1 and 64, against in-process ``TextClassifier``'s on the same
  sentences (one call per sentence, and batches of 64).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from ortpipe.benchmarks.serve_load import RawHttpClient, free_port, run_client, server
from ortpipe.runtime.machine import describe_machine, isa_summary

LONG = " ".join(["this film is long and slow but the end is moving"] * 60)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"p50_ms": 1000 * ordered[len(ordered) // 2], "p99_ms": 1000 * ordered[min(len(ordered) - 1,
                                                                                     int(len(ordered) * 0.99))]}


def _serve(names: list[str], bundle: str | None):
    from ortpipe.runtime import default_bundle_dir

    path = bundle or str(default_bundle_dir())
    port = free_port()
    command = [sys.executable, "-m", "ortpipe.cli", "serve", "--port", str(port), "--threads", "2",
               *(arg for name in names for arg in ("--model", f"{name}={path}"))]
    return server(command, port)


def _sentences(url: str, model: str, count: int) -> list[float]:
    async def run():
        client = await RawHttpClient.connect(url)
        times = []
        try:
            for i in range(count):
                started = time.perf_counter()
                status, _ = await client.post_json(f"/models/{model}/predict", {"inputs": f"a fine film {i}"})
                assert status == 200
                times.append(time.perf_counter() - started)
        finally:
            client.close()
        return times
    return run_client(run())


async def _post_long(url: str) -> None:
    client = await RawHttpClient.connect(url)
    try:
        await client.post_json("/models/a/predict", {"inputs": [[LONG]] * 256, "truncate": True})
    finally:
        client.close()


def _long_request(url: str, finished: threading.Event) -> None:
    run_client(_post_long(url))
    finished.set()


def fairness(url: str, sentences: int) -> dict:
    idle = _percentiles(_sentences(url, "a", sentences))
    found = {"idle": idle}
    for target in ("a", "b"):
        finished = threading.Event()
        worker = threading.Thread(target=_long_request, args=(url, finished))
        worker.start()
        time.sleep(0.5)  # the long request parsed, tokenized and running
        during = []
        while not finished.is_set() and len(during) < sentences:
            during += _sentences(url, target, 1)
        worker.join()
        found[f"long_on_{'same' if target == 'a' else 'other'}_model"] = {**_percentiles(during), "count": len(during)}
    return found


async def _throughput(url: str, models: list[str], texts: list[str], clients: int, seconds: float) -> float:
    connections = [await RawHttpClient.connect(url) for _ in range(clients)]
    stop_at, sent = time.perf_counter() + seconds, [0]

    async def loop(connection, model):
        i = 0
        while time.perf_counter() < stop_at:
            status, _ = await connection.post_json(f"/models/{model}/predict", {"inputs": texts[i % len(texts)]})
            assert status == 200
            i += 1
            sent[0] += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(c, models[k % len(models)]) for k, c in enumerate(connections)))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return sent[0] / elapsed


def throughput(url: str, models: list[str], texts: list[str], clients: int, seconds: float) -> dict:
    return {"sentences_per_s": run_client(_throughput(url, models, texts, clients, seconds)), "models": len(models),
            "clients": clients}


async def _send_all(url: str, texts: list[str], concurrency: int, count: int) -> None:
    connections = [await RawHttpClient.connect(url) for _ in range(concurrency)]
    queue = list(range(count))

    async def loop(connection):
        while queue:
            i = queue.pop()
            await connection.post_json("/models/a/predict", {"inputs": texts[i % len(texts)]})
    await asyncio.gather(*(loop(c) for c in connections))
    for connection in connections:
        connection.close()


def cpu_per_1000(url: str, pid: int, texts: list[str], concurrency: int, count: int) -> float:
    before = _cpu_seconds(pid)
    run_client(_send_all(url, texts, concurrency, count))
    return 1000 * (_cpu_seconds(pid) - before) / count


def main(argv=None) -> int:
    from ortpipe.export.data import read_labelled_tsv, sst2_dir
    from ortpipe.runtime import TextClassifier

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle")
    parser.add_argument("--sentences", type=int, default=60, help="single-sentence requests per fairness phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="per throughput run")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    texts = read_labelled_tsv(sst2_dir() / "test.tsv").texts
    report: dict = {"machine": isa_summary(describe_machine()), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                      time.gmtime())}
    clf = TextClassifier.load(args.bundle, threads=2)
    encoded = clf.tokenize([LONG], truncation=True)
    clf.infer(encoded)
    call = statistics.median(_timed(lambda: clf.infer(encoded)) for _ in range(10))
    report["model_call_512_ms"] = 1000 * call
    report["variant"] = clf.variant
    in_process = {}
    for size in (1, 64):
        started = time.process_time()
        for i in range(0, len(texts), size):
            clf(texts[i:i + size], batch_size=size)
        in_process[size] = 1000 * (time.process_time() - started) / len(texts)

    report["rss_mb"] = {}
    for count in (1, 2, 3):
        with _serve([chr(97 + i) for i in range(count)], args.bundle) as (url, process):
            _sentences(url, "a", 20)
            report["rss_mb"][count] = _rss_mb(process.pid)
            print(f"RSS with {count} model(s): {report['rss_mb'][count]:.0f} MB", file=sys.stderr, flush=True)
            if count == 1:
                report["alone"] = throughput(url, ["a"], texts, 64, args.seconds)
                report["cpu_per_1000"] = {c: {"server": cpu_per_1000(url, process.pid, texts, c, 872),
                                              "in_process": in_process[c]} for c in (1, 64)}
            if count == 2:
                report["fairness"] = fairness(url, args.sentences)
                report["together"] = throughput(url, ["a", "b"], texts, 64, args.seconds)
                before = _cpu_seconds(process.pid)
                time.sleep(args.idle_s)
                report["idle_cpu_share"] = (_cpu_seconds(process.pid) - before) / args.idle_s
            print(json.dumps(report, indent=1), file=sys.stderr, flush=True)
    report["together_over_alone"] = report["together"]["sentences_per_s"] / report["alone"]["sentences_per_s"]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
