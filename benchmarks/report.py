"""Turn the raw figures of :func:`ortpipe.benchmarks.suite.run_bench` into a table and a chart."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ortpipe.runtime.machine import describe_machine, isa_summary


def _get(figures: dict, *keys, default=None):
    for key in keys:
        if not isinstance(figures, dict) or key not in figures:
            return default
        figures = figures[key]
    return figures


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def rows(results: dict) -> list[dict]:
    """One row per path with its figures and its speed-ups over ``seed``."""
    paths = results["paths"]
    seed = paths.get("seed", {})
    seed_p50 = _get(seed, "latency", "p50_ms")
    seed_tput = _get(seed, "throughput", "texts_per_s")
    seed_cold = _get(seed, "cold_start", "first_prediction_s")
    seed_rss = _get(seed, "cold_start", "peak_rss_mb")
    table = []
    for name, figures in paths.items():
        p50 = _get(figures, "latency", "p50_ms")
        tput = _get(figures, "throughput", "texts_per_s")
        tput_sorted = _get(figures, "throughput_sorted", "texts_per_s")
        cold = _get(figures, "cold_start", "first_prediction_s")
        rss = _get(figures, "cold_start", "peak_rss_mb")
        table.append({
            "path": name, "provider": figures.get("provider"),
            "p50_ms": p50, "p95_ms": _get(figures, "latency", "p95_ms"), "p99_ms": _get(figures, "latency", "p99_ms"),
            "latency_speedup": seed_p50 / p50 if seed_p50 and p50 else None,
            "texts_per_s": tput, "texts_per_s_sorted": tput_sorted,
            "throughput_speedup": max(filter(None, (tput, tput_sorted))) / seed_tput if seed_tput and tput else None,
            "long_ms": _get(figures, "long", "median_ms"),
            "overhead_ms": _get(figures, "overhead", "overhead_p50_ms"),
            "cold_start_s": cold, "cold_start_ratio": cold / seed_cold if seed_cold and cold else None,
            "peak_rss_mb": rss, "rss_ratio": rss / seed_rss if seed_rss and rss else None,
            "accuracy": figures.get("accuracy"), "agreement_with_seed": figures.get("agreement_with_seed"),
            "precision": _get(figures, "efficiency", "precision"),
            "latency_pct": _get(figures, "efficiency", "latency", "percent_of_limit"),
            "throughput_pct": _get(figures, "efficiency", "throughput", "percent_of_limit"),
        })
    return table


def machine_line(machine: dict) -> str:
    """CPU with its ISA features (older result files carry only the CPU name)."""
    return isa_summary(machine) if "isa" in machine else machine["cpu"]


def format_table(results: dict) -> str:
    """A Markdown table plus the machine line, ready for a terminal or the README."""
    head = ("| path | p50 ms | p95 ms | p99 ms | × seed | sent/s (file order) | sent/s (sorted) | × seed "
            "| 8×512 tok ms | overhead ms | cold start s | peak RSS MB | accuracy | agree w/ seed "
            "| % of limit, 1 sent | % of limit, bulk |")
    lines = [head, "|" + "---|" * 16]
    for r in rows(results):
        lines.append(" | ".join([
            f"| {r['path']}", _fmt(r["p50_ms"], ".2f"), _fmt(r["p95_ms"], ".2f"), _fmt(r["p99_ms"], ".2f"),
            _fmt(r["latency_speedup"], ".1f", "×"), _fmt(r["texts_per_s"], ".0f"),
            _fmt(r["texts_per_s_sorted"], ".0f"), _fmt(r["throughput_speedup"], ".1f", "×"),
            _fmt(r["long_ms"], ".0f"), _fmt(r["overhead_ms"], ".3f"), _fmt(r["cold_start_s"], ".2f"),
            _fmt(r["peak_rss_mb"], ".0f"),
            _fmt(None if r["accuracy"] is None else r["accuracy"] * 100, ".2f", " %"),
            _fmt(None if r["agreement_with_seed"] is None else r["agreement_with_seed"] * 100, ".2f", " %"),
            _fmt(r["latency_pct"], ".1f", f" % {r['precision']}"),
            _fmt(r["throughput_pct"], ".1f", f" % {r['precision']}"),
        ]) + " |")
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    lines += ["", f"Machine: {machine_line(machine)}, {machine['cores']} cores, {machine['threads']} threads for "
              f"every path; {machine['platform']}; Python {machine['python']}; {versions}. Measured {machine['date']}."]
    limits = results.get("limits")
    if limits:
        lines.append(f"Limits ({limits['threads']} threads, {limits['gemm']} through ONNX Runtime): fp32 MatMul "
                     f"{limits['fp32_gflops']:.0f} GFLOP/s, int8 MatMulInteger {limits['int8_gops']:.0f} GOP/s. "
                     "% of limit = useful work (real tokens × the model's FLOPs per token, attention included, "
                     "padding excluded) / time, against the limit of the path's arithmetic.")
    lines.append(f"Data: {results.get('data') or 'none (no throughput/accuracy)'}; batch size 32; latency = "
                 "'This course is amazing!' end to end. Figures are specific to this machine.")
    lines += [f"Skipped: {reason}" for reason in results.get("skipped", [])]
    return "\n".join(lines)


def write_plot(results: dict, target: Path) -> Path:
    """A PNG with p50 latency and throughput per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rows(results)
    names = [r["path"] for r in table]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.barh(names, [r["p50_ms"] or 0 for r in table], color="#4C72B0")
    left.set_xlabel("single-sentence p50 latency, ms (lower is better)")
    left.invert_yaxis()
    best = [max(filter(None, (r["texts_per_s"], r["texts_per_s_sorted"])), default=0) for r in table]
    right.barh(names, best, color="#55A868")
    right.set_xlabel("sentences per second, batch 32, best batching (higher is better)")
    right.invert_yaxis()
    for axis, values, spec in ((left, [r["p50_ms"] or 0 for r in table], "{:.2f}"), (right, best, "{:.0f}")):
        for i, value in enumerate(values):
            axis.text(value, i, " " + spec.format(value), va="center", fontsize=8)
    machine = results["machine"]
    figure.suptitle(f"ortpipe vs PyTorch — {machine_line(machine)}\n{machine['threads']} threads, {machine['date']}",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target


def stamped(**figures) -> dict:
    """A standalone benchmark's report: this machine's CPU and ISA and the date, then ``figures``."""
    return {"machine": isa_summary(describe_machine()), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **figures}


def publish(report: dict, path: Path | None) -> int:
    """Print ``report`` as JSON, and write it to ``path`` too when given; the exit status (0)."""
    text = json.dumps(report, indent=2)
    print(text)
    if path:
        path.write_text(text + "\n", encoding="utf-8")
    return 0
