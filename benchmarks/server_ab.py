"""Servers side by side, in alternating bursts: a change's server CPU per sentence against another's.

    python -m ortpipe.benchmarks.server_ab --clients 64 --bursts 10 \\
        --server 'before|PYTHONPATH=/path/to/old/checkout|' --server 'after||' --server 'fast||--memory fast'

Each ``--server NAME|ENV|FLAGS`` is an ``ortpipe serve`` of the same bundle (``ENV``: space-separated
``KEY=VALUE`` for its process, e.g. a ``PYTHONPATH`` holding another checkout as ``ortpipe/``; ``FLAGS``:
more serve flags). All start at once; then, burst by burst, each gets the same random half of SST-2's test
sentences (a quarter at one client), one per request, from ``--clients`` clients. This machine's speed drifts
by a quarter within minutes, so a ratio is taken within each burst (against the first server) and the
median reported, with the server's CPU per sentence, its event loop thread's part, and the client's p50.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

from ortpipe.benchmarks.http_client import free_port, run_client, server
from ortpipe.benchmarks.report import publish, stamped
from ortpipe.benchmarks.server_cost import _clients, measured, serve_command


def _start(stack: ExitStack, spec: str, bundle: str, threads: int) -> tuple[str, tuple]:
    name, env, flags = (spec.split("|") + ["", ""])[:3]
    port = free_port()
    command = serve_command(port, threads, "--bundle", bundle, *flags.split())
    environ = {**os.environ, **dict(pair.split("=", 1) for pair in env.split())}
    return name, stack.enter_context(server(command, port, env=environ))


def compare(specs: list[str], bundle: str, texts: list[str], clients: int, bursts: int, threads: int = 2,
            seed: int = 0) -> dict:
    """Per server: the median CPU ms per sentence, event loop ms per sentence, p50 ms, and the median ratio of
    its CPU to the first server's within a burst (with the range)."""
    rows: dict[str, dict[str, list[float]]] = {}
    with ExitStack() as stack:
        servers = dict(_start(stack, spec, bundle, threads) for spec in specs)
        for url, _ in servers.values():
            run_client(_clients(url, texts[:128], clients))  # warm the connections and the arenas
        draw, size = random.Random(seed), max(1, len(texts) // (2 if clients > 1 else 4))
        for _ in range(bursts):
            burst = draw.sample(texts, size)
            for name, (url, process) in servers.items():
                figures = measured(url, process.pid, burst, clients)
                row = rows.setdefault(name, {"cpu": [], "loop": [], "p50": [], "took": []})
                row["cpu"].append(figures["cpu_ms_per_sentence"])
                row["loop"].append(figures["event_loop_ms_per_sentence"])
                row["p50"].append(figures["p50_ms"])
                row["took"].append(figures["host_took_pct"])
    first = rows[next(iter(rows))]["cpu"]
    report = {}
    for name, row in rows.items():
        ratios = [mine / theirs for mine, theirs in zip(row["cpu"], first)]
        report[name] = {"cpu_ms_per_sentence": statistics.median(row["cpu"]),
                        "event_loop_ms_per_sentence": statistics.median(row["loop"]),
                        "p50_ms": statistics.median(row["p50"]), "ratio_to_first": statistics.median(ratios),
                        "ratio_range": [min(ratios), max(ratios)], "host_took_pct": statistics.median(row["took"])}
    return report


def main(argv=None) -> int:
    from ortpipe.export.data import read_labelled_tsv, sst2_dir
    from ortpipe.runtime.bundle import default_bundle_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="append", required=True, help="NAME|ENV|FLAGS (repeatable; the first "
                                                                          "is the one the others are compared with)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bundle", help="default: the default bundle")
    parser.add_argument("--data", type=Path, help="labelled TSV (default: SST-2's test.tsv)")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args(argv)
    texts = read_labelled_tsv(args.data or sst2_dir() / "test.tsv").texts
    report = compare(args.server, str(args.bundle or default_bundle_dir()), texts, args.clients, args.bursts,
                     args.threads)
    return publish(stamped(clients=args.clients, bursts=args.bursts, threads=args.threads, servers=report),
                   args.json)


if __name__ == "__main__":
    sys.exit(main())
