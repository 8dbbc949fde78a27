"""Streaming a file, and Ray Data, against classifying the same texts in one in-process call.

    python -m ortpipe.benchmarks.stream_bench --json stream.json          # SST-2 train.tsv, 60,614 sentences
    python -m ortpipe.benchmarks.stream_bench --ray 1x2 2x1 --json stream.json

All use the default bundle as ``load()`` picks it at batch 32: in-process,
``clf(texts)`` on the whole list (sorted by length over all of it); streaming,
:func:`~ortpipe.runtime.stream.classify_file` on the same sentences written one
per line (sorted within each 8,192-row chunk), JSON Lines out; with ``--ray
AxT``, :func:`~ortpipe.distributed.data.classify_with_ray` on that file with A
actors of T threads each, on a local Ray of this machine's CPUs, Parquet out
(each run ships the bundle, starts its actors and loads the model: all counted).
A Ray run of the first ``--overhead-rows`` rows alone measures that fixed cost,
so that ``rows / (seconds - fixed)`` is the pool's steady rate.
Alternating, best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ortpipe.runtime.machine import describe_machine, isa_summary


def main(argv=None) -> int:
    from ortpipe.export.data import read_labelled_tsv, sst2_dir
    from ortpipe.runtime import TextClassifier
    from ortpipe.runtime.stream import classify_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle")
    parser.add_argument("--data", type=Path, help="a labelled TSV (default: SST-2 train.tsv)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ray", nargs="*", default=[], metavar="AxT",
                        help="also Ray Data with A actors of T threads each (e.g. 1x2 2x1)")
    parser.add_argument("--overhead-rows", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    pools = [tuple(int(n) for n in spec.lower().split("x")) for spec in args.ray]
    texts = read_labelled_tsv(args.data or sst2_dir() / "train.tsv").texts
    clf = TextClassifier.load(args.bundle, threads=args.threads)
    times: dict[str, list[float]] = {"in_process": [], "streaming": []}
    fixed: dict[str, list[float]] = {}
    if pools:
        import ray

        ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "texts.txt", Path(folder) / "labels.jsonl"
        lines = [t.replace("\n", " ") + "\n" for t in texts]
        source.write_text("".join(lines), encoding="utf-8")
        head = Path(folder) / "head.txt"
        head.write_text("".join(lines[:args.overhead_rows]), encoding="utf-8")
        clf(texts[:256], batch_size=32)  # warm-up
        for round_number in range(args.rounds):
            start = time.perf_counter()
            clf(texts, batch_size=32)
            times["in_process"].append(time.perf_counter() - start)
            start = time.perf_counter()
            classify_file(clf, source, out, batch_size=32, keep=[])
            times["streaming"].append(time.perf_counter() - start)
            for actors, threads in pools:
                name = f"ray_{actors}x{threads}"
                fixed.setdefault(name, []).append(_ray_seconds(head, Path(folder) / f"h{name}{round_number}",
                                                               args.bundle, actors, threads))
                times.setdefault(name, []).append(_ray_seconds(source, Path(folder) / f"{name}{round_number}",
                                                               args.bundle, actors, threads))
    rates = {name: len(texts) / min(values) for name, values in times.items()}
    # None where the whole job took no longer than its fixed cost (too few texts to tell a rate)
    steady = {name: len(texts) / (min(times[name]) - min(values)) if min(times[name]) > min(values) else None
              for name, values in fixed.items()}
    machine = describe_machine()
    report = {"texts": len(texts), "variant": clf.variant, "memory": clf.memory.setting, "threads": args.threads,
              "texts_per_s": rates, "streaming_share": rates["streaming"] / rates["in_process"],
              "ray_share_of_streaming": {name: rates[name] / rates["streaming"] for name in fixed},
              "ray_fixed_seconds": {name: min(values) for name, values in fixed.items()},
              "ray_steady_texts_per_s": steady, "overhead_rows": args.overhead_rows,
              "seconds": times, "machine": isa_summary(machine), "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def _ray_seconds(source: Path, out: Path, bundle, actors: int, threads: int) -> float:
    """Wall seconds of one whole Ray Data job: shipping, actor start, model load, read, classify, write."""
    from ortpipe.distributed.data import classify_with_ray

    start = time.perf_counter()
    classify_with_ray(source, out, bundle=bundle, actors=actors, threads=threads, batch_size=32, keep=[],
                      quiet=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
