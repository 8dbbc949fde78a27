"""The server's CPU per sentence against in-process CPU per sentence, on the same texts and threads.

    python -m ortpipe.benchmarks.server_cost --json server_cost.json [--serve-flag=--spinning …]

``ortpipe serve`` runs the bundle (default: the default bundle, ``load()``'s variant) in its own process on
127.0.0.1; clients send one SST-2 test sentence per request. The server's CPU is read from
``/proc/<pid>/stat`` (user + system), so the load generator that shares the cores does not count. The
in-process yardsticks run in this process, CPU from ``time.process_time()``: ``clf(text)`` one at a time
(against one client) and ``clf(texts, batch_size=32)`` (against 64 concurrent clients). Reported per level:
CPU milliseconds per sentence (and the event loop thread's part of it) and the ratio, each round's against
the mean of the in-process runs just before and after it (the machine's speed drifts); at one client the
p50/p99 latency (client side) against in-process p50 (calls back to back, and calls spaced by
:data:`SPACING_S` of sleep, as a server's calls are spaced by the requests' round trips: threads that waited
start slower, in-process too); at 64 the throughput; and the idle CPU of a server
with two models over ``--idle-s``. On a virtual machine each measurement also records the share of the
CPUs its host took meanwhile (steal time, ``/proc/stat``): a round it ran under is not comparable to a quiet
one (seen on 2 cores: 30-50 % taken, ratios 1.4-1.8× instead of 1.0-1.3×).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

from ortpipe.benchmarks.http_client import RawHttpClient, free_port, run_client, server
from ortpipe.benchmarks.report import publish, stamped

TICKS = os.sysconf("SC_CLK_TCK")
SPACING_S = 0.001  # about one request's round trip outside the model at one client (2 cores)


def process_cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (its threads included), or of one ``thread`` of it."""
    where = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    fields = Path(where).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def host_ticks() -> tuple[int, int]:
    """(ticks the host took, all ticks) of every CPU since boot, from ``/proc/stat`` (steal time: the part of a
    virtual machine's CPU time its host gave to others; 0 on bare metal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def taken_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Percent of the CPUs' time between two :func:`host_ticks` readings that the host took."""
    return 100.0 * (after[0] - before[0]) / max(after[1] - before[1], 1)


async def _clients(url: str, texts: list[str], concurrency: int) -> list[float]:
    """Every text once, by ``concurrency`` clients each posting one at a time; the latencies (s)."""
    connections = [await RawHttpClient.connect(url) for _ in range(concurrency)]
    latencies, cursor = [], iter(range(len(texts)))

    async def client(connection: RawHttpClient) -> None:
        for index in cursor:
            started = time.perf_counter()
            status, _ = await connection.post_json("/predict", {"inputs": texts[index]})
            if status != 200:
                raise RuntimeError(f"the server answered {status}")
            latencies.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*(client(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    return latencies


def serve_command(port: int, threads: int, *flags: str) -> list[str]:
    """``ortpipe serve`` on 127.0.0.1:``port`` with ``threads``, no access log, and ``flags`` (its models)."""
    return [sys.executable, "-m", "ortpipe.cli", "serve", "--port", str(port), "--threads", str(threads),
            "--no-access-log", *flags]


def served(url: str, pid: int, texts: list[str], concurrency: int) -> dict:
    """Server CPU per sentence, once warmed (see :func:`measured`)."""
    run_client(_clients(url, texts[:64], concurrency))  # warm the connections and the arena
    time.sleep(0.2)
    return measured(url, pid, texts, concurrency)


def measured(url: str, pid: int, texts: list[str], concurrency: int) -> dict:
    """Server CPU per sentence (and the event loop's share: the main thread's HTTP, JSON, tokenizing, planning
    and answers; the rest is the model's threads) and the client-side latencies at ``concurrency``."""
    host, cpu, loop, started = host_ticks(), process_cpu_s(pid), process_cpu_s(pid, pid), time.perf_counter()
    latencies = run_client(_clients(url, texts, concurrency))
    wall = time.perf_counter() - started
    loop = process_cpu_s(pid, pid) - loop  # the part read inside the whole's two readings
    cpu = process_cpu_s(pid) - cpu
    # /proc rounds each thread's and the process's time to ticks apart: where the loop thread does nearly all
    # the work (one client, the short call on the loop) its reading can pass the whole's by a tick
    loop = min(loop, cpu)
    return {"cpu_ms_per_sentence": cpu / len(texts) * 1000, "event_loop_ms_per_sentence": loop / len(texts) * 1000,
            "sentences_per_s": len(texts) / wall, "p50_ms": float(np.percentile(latencies, 50) * 1000),
            "p99_ms": float(np.percentile(latencies, 99) * 1000), "host_took_pct": taken_pct(host, host_ticks())}


def in_process(clf, texts: list[str]) -> dict:
    """CPU per sentence in-process: one call per text, and all texts at batch 32; one call's p50."""
    clf(texts[:64], batch_size=32)
    host, cpu = host_ticks(), time.process_time()
    each = []
    for text in texts:
        started = time.perf_counter()
        clf(text)
        each.append(time.perf_counter() - started)
    one = (time.process_time() - cpu) / len(texts) * 1000
    spaced = []
    for text in texts:
        time.sleep(SPACING_S)
        started = time.perf_counter()
        clf(text)
        spaced.append(time.perf_counter() - started)
    cpu, started = time.process_time(), time.perf_counter()
    clf(texts, batch_size=32)
    bulk, wall = (time.process_time() - cpu) / len(texts) * 1000, time.perf_counter() - started
    return {"one_at_a_time_cpu_ms": one, "p50_ms": float(np.median(each) * 1000),
            "p50_spaced_ms": float(np.median(spaced) * 1000), "batch32_cpu_ms": bulk,
            "batch32_sentences_per_s": len(texts) / wall, "host_took_pct": taken_pct(host, host_ticks())}


def idle_cpu(bundle: str, threads: int, flags: list[str], seconds: float) -> float:
    """Percent of one core a server with two models (the bundle twice) spends doing nothing for ``seconds``."""
    port = free_port()
    with server(serve_command(port, threads, "--model", f"a={bundle}", "--model", f"b={bundle}", *flags),
                port) as (_url, process):
        time.sleep(2)
        cpu = process_cpu_s(process.pid)
        time.sleep(seconds)
        return (process_cpu_s(process.pid) - cpu) / seconds * 100


def measure(bundle: str, texts: list[str], threads: int, flags: list[str], idle_s: float, rounds: int = 1,
            baseline: str | None = None) -> dict:
    """Each server and the in-process yardsticks, ``rounds`` times in turn (the machine's speed drifts), each
    round's servers between two in-process runs, whose mean is that round's yardstick (``yardsticks``).

    ``baseline``: a folder holding another checkout as ``ortpipe/``, served beside this one with the same
    flags (``PYTHONPATH``), so that a change is measured against what it changes in one run.
    """
    from contextlib import ExitStack

    from ortpipe.runtime import TextClassifier

    clf = TextClassifier.load(bundle, threads=threads)
    names = ["this checkout"] + (["baseline"] if baseline else [])
    rows: dict = {name: [] for name in [*names, "in-process"]}
    with ExitStack() as stack:
        urls = {}
        for name in names:
            port = free_port()
            command = serve_command(port, threads, "--bundle", bundle, "--variant", clf.variant, *flags)
            env = {**os.environ, **({"PYTHONPATH": baseline} if name == "baseline" else {})}
            urls[name] = stack.enter_context(server(command, port, env=env))
        rows["in-process"].append(in_process(clf, texts))
        for _ in range(rounds):
            for name, (url, process) in urls.items():
                rows[name].append({"one_client": served(url, process.pid, texts, 1),
                                   "clients_64": served(url, process.pid, texts, 64)})
            time.sleep(0.5)
            rows["in-process"].append(in_process(clf, texts))
    runs = rows["in-process"]
    yardsticks = [{key: (before[key] + after[key]) / 2 for key in before} for before, after in zip(runs, runs[1:])]
    report = {"variant": clf.variant, "server_flags": flags, "rounds": rows, "yardsticks": yardsticks}
    for name in names:
        report[name] = [{"ratio_one_client": r["one_client"]["cpu_ms_per_sentence"] / y["one_at_a_time_cpu_ms"],
                         "ratio_64_clients": r["clients_64"]["cpu_ms_per_sentence"] / y["batch32_cpu_ms"],
                         "p50_gap_ms": r["one_client"]["p50_ms"] - y["p50_ms"],
                         "p50_gap_spaced_ms": r["one_client"]["p50_ms"] - y["p50_spaced_ms"]}
                        for r, y in zip(rows[name], yardsticks)]
    report["idle_two_models_pct_of_a_core"] = idle_cpu(bundle, threads, flags, idle_s)
    return report


def summary(report: dict) -> str:
    """The report as a Markdown table: per server and round, CPU per sentence against in-process, the event
    loop's part, the p50 gap at one client and the throughput at 64; then the idle server's CPU."""
    lines = ["| server, round | 1 client: CPU/sentence (× in-process) | 64 clients: CPU/sentence (× in-process) "
             "| event loop at 1 / 64 | p50 over in-process (spaced) | sentences/s at 64 | host took at 1 / 64 |",
             "|---|---|---|---|---|---|---|"]
    for name, rounds in report["rounds"].items():
        if name == "in-process":
            continue
        for index, (row, ratio) in enumerate(zip(rounds, report[name])):
            one, many = row["one_client"], row["clients_64"]
            lines.append(f"| {name}, {index + 1} "
                         f"| {one['cpu_ms_per_sentence']:.2f} ms ({ratio['ratio_one_client']:.2f}×) "
                         f"| {many['cpu_ms_per_sentence']:.2f} ms ({ratio['ratio_64_clients']:.2f}×) "
                         f"| {one['event_loop_ms_per_sentence']:.2f} / {many['event_loop_ms_per_sentence']:.2f} ms "
                         f"| {ratio['p50_gap_ms']:+.2f} ms ({ratio['p50_gap_spaced_ms']:+.2f}) "
                         f"| {many['sentences_per_s']:.0f} "
                         f"| {one['host_took_pct']:.0f} / {many['host_took_pct']:.0f} % |")
    for name in report["rounds"]:
        if name != "in-process":
            ratios = report[name]
            lines.append(f"| {name}, median | ({_median(ratios, 'ratio_one_client'):.2f}×) "
                         f"| ({_median(ratios, 'ratio_64_clients'):.2f}×) | | "
                         f"{_median(ratios, 'p50_gap_ms'):+.2f} ms ({_median(ratios, 'p50_gap_spaced_ms'):+.2f}) | | |")
    lines.append(f"\nAn idle server with two models: {report['idle_two_models_pct_of_a_core']:.2f} % of a core.")
    return "\n".join(lines)


def _median(ratios: list[dict], key: str) -> float:
    return float(np.median([ratio[key] for ratio in ratios]))


def main(argv=None) -> int:
    from ortpipe.export.data import read_labelled_tsv, sst2_dir
    from ortpipe.runtime.bundle import default_bundle_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="default: the default bundle")
    parser.add_argument("--data", type=Path, help="labelled TSV (default: SST-2's test.tsv)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--serve-flag", action="append", default=[], help="a flag for ortpipe serve (repeatable)")
    parser.add_argument("--rounds", type=int, default=1, help="measure every server and in-process this many times")
    parser.add_argument("--baseline", help="a folder with another checkout as ortpipe/, served beside this one")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args(argv)
    texts = read_labelled_tsv(args.data or sst2_dir() / "test.tsv").texts
    bundle = str(args.bundle or default_bundle_dir())
    report = stamped(sentences=len(texts), threads=args.threads,
                     **measure(bundle, texts, args.threads, args.serve_flag, args.idle_s, args.rounds, args.baseline))
    code = publish(report, args.json)
    print(summary(report))
    return code


if __name__ == "__main__":
    sys.exit(main())
