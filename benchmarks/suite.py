"""Run every workload on every path, in one process run, and collect the figures."""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ortpipe.benchmarks import workloads
from ortpipe.benchmarks.limits import efficiency, measure_limits, useful_flops
from ortpipe.benchmarks.paths import GPU_PATH_NAMES, cuda_available, default_path_names, load_path
from ortpipe.runtime.machine import describe_machine
from ortpipe.runtime.manifest import Manifest, read_manifest
from ortpipe.runtime.tokenize import TextTokenizer
from ortpipe.runtime.versions import library_versions


@dataclass(frozen=True)
class BenchConfig:
    """What to measure, and how much."""

    bundle: Path
    paths: tuple[str, ...] = field(default_factory=default_path_names)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    data: Path | None = None
    quick: bool = False
    latency_repeats: int = 300
    throughput_rounds: int = 2
    throughput_limit: int | None = None
    cold_start: bool = True

    @classmethod
    def quick_config(cls, **kwargs) -> "BenchConfig":
        return cls(quick=True, latency_repeats=50, throughput_rounds=1, throughput_limit=256, cold_start=False,
                   **kwargs)


def machine_info(threads: int) -> dict:
    """CPU, ISA features, cores, threads, library versions: recorded with every figure."""
    versions = library_versions(("ortpipe", "onnxruntime", "onnxruntime-gpu", "torch", "transformers",
                                 "optimum", "optimum-onnx", "tokenizers", "numpy"))
    return {**describe_machine(cuda=True), "threads": threads, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


class UsefulWork:
    """FLOPs of each workload on its real tokens (see :func:`~.limits.model_flops`)."""

    def __init__(self, bundle: Path, manifest: Manifest, texts: list[str] | None):
        tokenizer = TextTokenizer(bundle / manifest.tokenizer_file, manifest.max_length, manifest.pad_token_id)
        self.architecture = manifest.architecture

        def flops(batch: list[str]) -> float:
            return useful_flops(self.architecture, [len(e.ids) for e in tokenizer.encode(batch)])

        self.one = flops([workloads.SHORT_SENTENCE])
        self.many = flops(texts) if texts else None
        self.long = flops(workloads.long_texts())

    def of(self, figures: dict, limits: dict, precision: str) -> dict:
        """Each workload's achieved G(FL)OP/s and its share of this machine's limit for ``precision``."""
        limit = limits["int8_gops"] if precision == "int8" else limits["fp32_gflops"]
        result = {"precision": precision, "limit": limit,
                  "latency": efficiency(self.one, figures["latency"]["p50_ms"] / 1000, limit),
                  "long": efficiency(self.long, figures["long"]["median_ms"] / 1000, limit)}
        bulk = [figures[k]["seconds"] for k in ("throughput", "throughput_sorted") if k in figures]
        if self.many and bulk:
            result["throughput"] = efficiency(self.many, min(bulk), limit)
        return result


def cold_start(path: str, bundle: Path, threads: int) -> dict:
    """Process start → first prediction, and peak RSS, for one path in a fresh interpreter."""
    started = time.time()
    out = subprocess.run([sys.executable, "-m", "ortpipe.benchmarks.coldstart", "--path", path,
                          "--bundle", str(bundle), "--threads", str(threads)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"first_prediction_s": result["first_prediction_at"] - started, "peak_rss_mb": result["peak_rss_mb"]}


def run_bench(config: BenchConfig, step: Callable[[str], None] = lambda what: None) -> dict:
    """Measure every path of ``config``; returns the raw figures (see :mod:`.report`)."""
    from ortpipe.export.data import read_labelled_tsv, sst2_dir

    bundle = Path(config.bundle)
    manifest = read_manifest(bundle)
    data_file = config.data or sst2_dir() / "test.tsv"
    data = read_labelled_tsv(data_file, limit=config.throughput_limit) if data_file.is_file() else None
    step("machine limits: fp32 and int8 GEMM through ONNX Runtime")
    limit_seconds = 0.5 if config.quick else 1.0
    limits = measure_limits(config.threads, seconds=limit_seconds)
    work = UsefulWork(bundle, manifest, data.texts if data else None) if manifest.architecture else None
    data_name = f"{data_file.parent.name}/{data_file.name} ({len(data)} sentences)" if data else None
    results: dict = {"machine": machine_info(config.threads), "limits": limits, "bundle": str(bundle),
                     "source_model": manifest.source_model,
                     "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
                     "data": data_name, "paths": {},
                     "skipped": [] if cuda_available() else
                     [f"{name}: this ONNX Runtime has no CUDA execution provider" for name in GPU_PATH_NAMES]}
    seed_labels = None
    for name in config.paths:
        step(f"{name}: loading")
        path = load_path(name, bundle, manifest, config.threads)
        figures: dict = {"provider": path.provider}
        step(f"{name}: latency ({config.latency_repeats} runs)")
        figures["latency"] = workloads.latency(path.one, config.latency_repeats)
        if name.startswith("ortpipe-"):
            figures["overhead"] = workloads.ortpipe_overhead(path.classifier, config.latency_repeats)
        if data:
            step(f"{name}: throughput on {len(data)} sentences")
            figures["throughput"], labels = workloads.throughput(path.many, data.texts, 32, config.throughput_rounds)
            if path.sorted_many:
                figures["throughput_sorted"], labels = workloads.throughput(path.sorted_many, data.texts, 32,
                                                                            config.throughput_rounds)
            figures["accuracy"] = workloads.accuracy(labels, data.labels, manifest.labels)
            if name == "seed":
                seed_labels = labels
            if seed_labels is not None:
                figures["agreement_with_seed"] = workloads.agreement(labels, seed_labels)
        step(f"{name}: 8 texts of ~512 tokens")
        figures["long"] = workloads.long_inputs(path.many, 1 if config.quick else 3)
        figures["precision"] = path.precision
        results["paths"][name] = figures
        del path
        gc.collect()
    # A limit is a best time: measured again after the paths and the better kept, so that noise during
    # one measurement cannot make a path look faster than the hardware.
    again = measure_limits(config.threads, seconds=limit_seconds)
    for key in ("fp32_gflops", "int8_gops"):
        limits[key] = max(limits[key], again[key])
    if work is not None:
        for figures in results["paths"].values():
            figures["efficiency"] = work.of(figures, limits, figures["precision"])
    if config.cold_start:
        for name in config.paths:
            step(f"{name}: cold start and peak RSS (fresh process)")
            results["paths"][name]["cold_start"] = cold_start(name, bundle, config.threads)
    return results

