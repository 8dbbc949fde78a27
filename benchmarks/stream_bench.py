"""Streaming a file against classifying the same texts in one in-process call.

    python -m ortpipe.benchmarks.stream_bench --json stream.json    # SST-2 train.tsv, 60,614 sentences

Both use one classifier (the default bundle as ``load()`` picks it, the given
threads) at batch 32: in-process, ``clf(texts)`` on the whole list (sorted by
length over all of it); streaming, :func:`~ortpipe.runtime.stream.classify_file`
on the same sentences written one per line (sorted within each 8,192-row chunk),
JSON Lines out. Alternating, best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    texts = read_labelled_tsv(args.data or sst2_dir() / "train.tsv").texts
    clf = TextClassifier.load(args.bundle, threads=args.threads)
    times = {"in_process": [], "streaming": []}
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "texts.txt", Path(folder) / "labels.jsonl"
        source.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
        clf(texts[:256], batch_size=32)  # warm-up
        for _ in range(args.rounds):
            start = time.perf_counter()
            clf(texts, batch_size=32)
            times["in_process"].append(time.perf_counter() - start)
            start = time.perf_counter()
            classify_file(clf, source, out, batch_size=32, keep=[])
            times["streaming"].append(time.perf_counter() - start)
    rates = {name: len(texts) / min(values) for name, values in times.items()}
    machine = describe_machine()
    report = {"texts": len(texts), "variant": clf.variant, "memory": clf.memory.setting, "threads": args.threads,
              "texts_per_s": rates, "streaming_share": rates["streaming"] / rates["in_process"],
              "seconds": times, "machine": isa_summary(machine), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                      time.gmtime())}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
