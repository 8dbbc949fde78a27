"""ONNX Runtime memory settings compared: RSS against throughput and p99 latency.

    python -m ortpipe.benchmarks.memory_settings --soak-minutes 3 --out memory/

For each setting, in a fresh process (the arena settings are process-wide):
the 872 SST-2 test sentences at batch 32 (best of 3 passes), the same
sentences one per call (p50/p99), then a soak (:mod:`.soak`) of the issue's
mixed calls. ``lean`` is ``shrink`` plus a cap of 1024 padded tokens per model
call; the others leave the caller's batches whole. Writes ``memory.json``,
``memory.md`` (the table) and ``memory.png`` (RSS over time, all settings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ortpipe.benchmarks.soak import MixedCalls, RssSampler, plot, run_calls, soak_texts, summarize
from ortpipe.benchmarks.workloads import percentiles
from ortpipe.runtime.machine import describe_machine, isa_summary

SETTINGS = ("fast", "no-arena", "same-as-requested", "shrink", "lean")


def measure_one(setting: str, bundle: str | None, variant: str | None, threads: int, minutes: float,
                data: str | None) -> dict:
    """All figures of one setting, in this process."""
    from ortpipe.export.data import read_labelled_tsv, sst2_dir
    from ortpipe.runtime import TextClassifier

    test = read_labelled_tsv(Path(data or sst2_dir()) / "test.tsv").texts
    clf = TextClassifier.load(bundle, variant=variant, threads=threads, memory=setting)
    sampler = RssSampler(os.getpid())
    rss_after_load = sampler.now()
    clf(test[:64], batch_size=32)  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        clf(test, batch_size=32)
        best = min(best, time.perf_counter() - start)
    singles = []
    for text in test:
        start = time.perf_counter()
        clf(text)
        singles.append(time.perf_counter() - start)
    result = {"setting": setting, "variant": clf.variant, "memory": clf.memory.as_dict(),
              "sst2_batch32_texts_per_s": len(test) / best, "sst2_single": percentiles(singles),
              "rss_after_sst2_mb": sampler.now()}
    with sampler:
        soak = run_calls(lambda batch: clf(batch, batch_size=64), MixedCalls(soak_texts(data)), minutes * 60)
    result["soak"] = {**soak, **summarize(sampler.samples, rss_after_load), "rss_mb": sampler.samples}
    return result


def table(results: list[dict]) -> str:
    lines = ["| setting | RSS after load | steady RSS | peak RSS | growth, last half | soak texts/s | "
             "872 at b32, texts/s | 1 sentence p50 / p99 ms |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["soak"]
        lines.append(f"| {r['setting']} | {s['rss_after_load_mb']:.0f} MB | {s['steady_rss_mb']:.0f} MB | "
                     f"{s['rss_peak_mb']:.0f} MB | {s['growth_last_half_mb']:+.1f} MB | {s['texts_per_s']:.0f} | "
                     f"{r['sst2_batch32_texts_per_s']:.0f} | {r['sst2_single']['p50_ms']:.2f} / "
                     f"{r['sst2_single']['p99_ms']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle")
    parser.add_argument("--variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--soak-minutes", type=float, default=3.0)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--data", help="SST-2 folder (default: $ORTPIPE_SST2_DIR or ../shared/data/sst2)")
    parser.add_argument("--out", required=True, help="folder for memory.json, memory.md, memory.png")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this setting here, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.bundle, args.variant, args.threads, args.soak_minutes,
                                     args.data)))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for setting in args.settings:
        command = [sys.executable, "-m", "ortpipe.benchmarks.memory_settings", "--one", setting, "--out", str(out),
                   "--threads", str(args.threads), "--soak-minutes", str(args.soak_minutes)]
        for flag, value in (("--bundle", args.bundle), ("--variant", args.variant), ("--data", args.data)):
            if value:
                command += [flag, value]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    machine = describe_machine()
    report = {"date": time.strftime("%Y-%m-%d"), "machine": isa_summary(machine), "cores": machine["cores"],
              "onnxruntime": machine["onnxruntime"], "threads": args.threads, "soak_minutes": args.soak_minutes,
              "results": results}
    (out / "memory.json").write_text(json.dumps(report, indent=1))
    heading = (f"{report['machine']}, {machine['cores']} cores, ONNX Runtime {machine['onnxruntime']}, "
               f"{args.threads} threads, variant {results[0]['variant']}, {report['date']}")
    (out / "memory.md").write_text(f"{heading}\n\n{table(results)}\n")
    plot({r["setting"]: r["soak"] for r in results}, out / "memory.png", heading)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
