"""The benchmark machinery (not its timings): every path runs, the report adds up."""

from __future__ import annotations

import json

import pytest

from ortpipe.benchmarks.report import format_table, rows, write_plot
from ortpipe.benchmarks.suite import BenchConfig, run_bench
from ortpipe.benchmarks.workloads import long_texts
from ortpipe.export.validate import PROBE_TEXTS


@pytest.fixture(scope="module")
def small_results(bundles, tmp_path_factory):
    data = tmp_path_factory.mktemp("bench") / "data.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(PROBE_TEXTS)))
    config = BenchConfig(bundle=bundles["bert"], threads=1, data=data, latency_repeats=5, throughput_rounds=1,
                         quick=True, cold_start=False,
                         paths=("seed", "hf-pipeline", "optimum", "ortpipe-fp32", "ortpipe-int8"))
    return run_bench(config)


def test_every_path_is_measured_on_every_workload(small_results):
    for figures in small_results["paths"].values():
        assert figures["latency"]["p50_ms"] > 0 and figures["latency"]["runs"] == 5
        assert figures["throughput"]["texts"] == len(PROBE_TEXTS)
        assert 0 <= figures["accuracy"] <= 1 and "agreement_with_seed" in figures
        assert figures["long"]["texts"] == 8
    assert "throughput_sorted" in small_results["paths"]["ortpipe-int8"]
    assert small_results["paths"]["ortpipe-fp32"]["overhead"]["session_run_p50_ms"] > 0


def test_limits_and_each_paths_share_of_them(small_results):
    limits = small_results["limits"]
    assert limits["fp32_gflops"] > 0 and limits["int8_gops"] > 0
    for name, figures in small_results["paths"].items():
        expected = "int8" if name in ("ortpipe-int8", "optimum") else "fp32"
        assert figures["efficiency"]["precision"] == expected, name
        for workload in ("latency", "throughput", "long"):
            assert figures["efficiency"][workload]["percent_of_limit"] > 0
    table = format_table(small_results)
    assert "% of limit, 1 sent" in table and "GFLOP/s" in table
    assert " ".join(small_results["machine"]["isa"]) in table


def test_float_paths_agree_with_seed(small_results):
    assert small_results["paths"]["ortpipe-fp32"]["agreement_with_seed"] == 1.0
    assert small_results["paths"]["hf-pipeline"]["agreement_with_seed"] == 1.0


def test_speedups_are_ratios_over_seed(small_results):
    table = {r["path"]: r for r in rows(small_results)}
    assert table["seed"]["latency_speedup"] == pytest.approx(1.0)
    seed_p50 = small_results["paths"]["seed"]["latency"]["p50_ms"]
    fp32_p50 = small_results["paths"]["ortpipe-fp32"]["latency"]["p50_ms"]
    assert table["ortpipe-fp32"]["latency_speedup"] == pytest.approx(seed_p50 / fp32_p50)


def test_table_json_and_plot(small_results, tmp_path):
    text = format_table(small_results)
    assert text.count("\n| ") >= 5 and "threads for every path" in text and "specific to this machine" in text
    json.dumps(small_results)
    png = write_plot(small_results, tmp_path / "bench.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_long_texts_are_about_512_tokens(bert_bundle):
    from ortpipe.runtime.tokenize import TextTokenizer

    tokenizer = TextTokenizer(bert_bundle / "tokenizer.json", max_length=10_000, pad_token_id=0)
    lengths = [len(e.ids) for e in tokenizer.encode(long_texts())]
    assert all(480 <= n <= 560 for n in lengths), lengths


def test_cold_start_runs_in_a_fresh_process(bert_bundle):
    from ortpipe.benchmarks.suite import cold_start

    result = cold_start("ortpipe-fp32", bert_bundle, 1)
    assert result["first_prediction_s"] > 0 and result["peak_rss_mb"] > 10
