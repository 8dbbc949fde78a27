"""Soak: a classifier fed texts of every length for minutes, its RSS sampled every second.

    python -m ortpipe.benchmarks.soak --minutes 10 --memory lean --json soak.json            # in-process
    python -m ortpipe.benchmarks.soak --minutes 10 --memory lean --target serve --json s.json  # ortpipe serve

Each call carries 1–64 random SST-2 sentences; 5 % of calls carry instead 1
or 8 texts of about 512 tokens (the issue's mix). In-process, a call is one
``clf(texts, batch_size=64)``; through the server, one ``POST /predict`` with
the call's texts, from one client on loopback. The sampler reads the RSS of
the process that holds the model. The report: RSS after load, peak, end, the
growth over the last half (the highest RSS of the second half minus the RSS
at the half), throughput and per-call latency. A PNG of RSS over time is
written beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ortpipe.benchmarks.workloads import percentiles
from ortpipe.runtime.machine import describe_machine, isa_summary

LONG_SHARE = 0.05
MAX_TEXTS = 64
MB = 1024 * 1024  # RSS figures are in MiB


def soak_texts(data: Path | None) -> list[str]:
    """SST-2 sentences: ``train.tsv`` (else ``test.tsv``) of ``data`` or the shared SST-2 folder."""
    from ortpipe.export.data import read_labelled_tsv, sst2_dir

    folder = Path(data) if data else sst2_dir()
    for name in ("train.tsv", "test.tsv"):
        if (folder / name).exists():
            return read_labelled_tsv(folder / name).texts
    raise SystemExit(f"no SST-2 train.tsv or test.tsv in {folder} (pass --data)")


class MixedCalls:
    """The call mix, reproducible from a seed: mostly 1–64 sentences, sometimes 1 or 8 long texts."""

    def __init__(self, texts: list[str], seed: int = 0):
        self.texts = texts
        self.rng = np.random.default_rng(seed)
        self.long = [" ".join(self.rng.choice(texts, size=60)) for _ in range(16)]  # ≥ 512 tokens each

    def next(self) -> list[str]:
        if self.rng.random() < LONG_SHARE:
            count = 1 if self.rng.random() < 0.5 else 8
            return [self.long[i] for i in self.rng.integers(0, len(self.long), size=count)]
        count = int(self.rng.integers(1, MAX_TEXTS + 1))
        return [self.texts[i] for i in self.rng.integers(0, len(self.texts), size=count)]


class RssSampler:
    """Samples one process's RSS every ``interval`` seconds in a thread, as ``(seconds, MB)``."""

    def __init__(self, pid: int, interval: float = 1.0):
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def now(self) -> float:
        return self.process.memory_info().rss / MB

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._start, self.now()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._start, self.now()))


def summarize(samples: list[tuple[float, float]], rss_after_load: float) -> dict:
    """RSS figures of a run.

    ``growth_last_half_mb``: the median RSS of the run's last tenth minus that of
    the tenth ending at the half (medians, so one long batch's spike does not
    count; a leak or a ratcheting arena does). ``steady_rss_mb``: the median
    over the second half.
    """
    times = np.array([t for t, _ in samples])
    rss = np.array([m for _, m in samples])
    end, half = times[-1], times[-1] / 2
    window = max(end / 10, 5.0)
    at_half = np.median(rss[(times > half - window) & (times <= half)])
    at_end = np.median(rss[times > end - window])
    return {"rss_after_load_mb": rss_after_load, "rss_peak_mb": float(rss.max()), "rss_end_mb": float(rss[-1]),
            "steady_rss_mb": float(np.median(rss[times >= half])), "growth_last_half_mb": float(at_end - at_half),
            "samples": len(samples)}


def run_calls(call, calls: MixedCalls, seconds: float) -> dict:
    """Make calls until ``seconds`` pass; returns texts/s, per-call latency and how many long calls."""
    latencies, texts, long_calls = [], 0, 0
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < stop_at:
        batch = calls.next()
        long_calls += len(batch[0]) > 1000
        start = time.perf_counter()
        call(batch)
        latencies.append(time.perf_counter() - start)
        texts += len(batch)
    elapsed = time.perf_counter() - started
    return {"texts_per_s": texts / elapsed, "texts": texts, "calls": len(latencies), "long_calls": long_calls,
            "call_latency": percentiles(latencies)}


def soak_in_process(args, texts: list[str]) -> dict:
    from ortpipe.runtime import TextClassifier

    clf = TextClassifier.load(args.bundle, variant=args.variant, threads=args.threads, memory=args.memory)
    sampler = RssSampler(os.getpid())
    rss_after_load = sampler.now()
    with sampler:
        result = run_calls(lambda batch: clf(batch, batch_size=MAX_TEXTS), MixedCalls(texts, args.seed),
                           args.minutes * 60)
    return {**result, **summarize(sampler.samples, rss_after_load), "variant": clf.variant,
            "memory": clf.model.memory.setting, "shrinks": clf.model.memory.shrinks, "rss_mb": sampler.samples}


def soak_server(args, texts: list[str]) -> dict:
    import httpx

    from ortpipe.benchmarks.serve_load import free_port, server

    port = free_port()
    command = [sys.executable, "-m", "ortpipe.cli", "serve", "--port", str(port), "--memory", args.memory]
    for flag, value in (("--bundle", args.bundle), ("--variant", args.variant), ("--threads", args.threads)):
        if value is not None:
            command += [flag, str(value)]
    with server(command, port) as (url, process), httpx.Client(timeout=60) as client:
        info = client.get(f"{url}/info").json()
        sampler = RssSampler(process.pid)
        rss_after_load = sampler.now()

        def call(batch: list[str]) -> None:
            # [[text], …]: a batch in TEI's form (a bare list of two strings would be one text pair)
            response = client.post(f"{url}/predict", json={"inputs": [[text] for text in batch], "truncate": True})
            if response.status_code != 200:
                raise RuntimeError(f"the server answered {response.status_code}: {response.text[:300]}")

        with sampler:
            result = run_calls(call, MixedCalls(texts, args.seed), args.minutes * 60)
    return {**result, **summarize(sampler.samples, rss_after_load), "variant": info.get("variant"),
            "memory": info.get("memory", {}).get("setting"), "rss_mb": sampler.samples}


def plot(runs: dict[str, dict], path: Path, title: str) -> None:
    """RSS over time, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for name, run in runs.items():
        times, rss = zip(*run["rss_mb"])
        axes.plot(np.array(times) / 60, rss, label=name)
    axes.set_xlabel("minutes")
    axes.set_ylabel("RSS (MiB)")
    axes.set_title(textwrap.fill(title, 110), fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="bundle folder (default: the default bundle)")
    parser.add_argument("--variant", help="default: what load() picks on this machine")
    parser.add_argument("--memory", default="lean", help="lean, fast, arena, no-arena, same-as-requested, shrink")
    parser.add_argument("--target", choices=("in-process", "serve"), default="in-process")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="SST-2 folder (default: $ORTPIPE_SST2_DIR or ../shared/data/sst2)")
    parser.add_argument("--json", required=True, help="where to write the report (the PNG goes beside it)")
    args = parser.parse_args(argv)
    texts = soak_texts(args.data)
    started = time.strftime("%Y-%m-%d %H:%M")
    run = (soak_server if args.target == "serve" else soak_in_process)(args, texts)
    machine = describe_machine()
    report = {**run, "target": args.target, "minutes": args.minutes, "threads": args.threads,
              "requested_memory": args.memory, "date": started, "machine": isa_summary(machine),
              "cores": machine["cores"], "onnxruntime": machine["onnxruntime"]}
    path = Path(args.json)
    path.write_text(json.dumps(report, indent=1))
    plot({f"{args.target}, {run['variant']}, memory={args.memory} ({run['memory']})": run}, path.with_suffix(".png"),
         f"{report['machine']}, {args.threads} threads, {report['date']}")
    print(json.dumps({k: v for k, v in report.items() if k != "rss_mb"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
