"""The GPU benchmark's bookkeeping (its measurements need a GPU: ``benchmarks/gpu_check.sh``)."""

from __future__ import annotations

from ortpipe.benchmarks.gpu_bench import read_texts, table, verdicts

FACTS = {"card": "NVIDIA H100", "driver": "580.1", "torch": "2.9", "cuda_torch": "13.0", "onnxruntime": "1.31.1",
         "date": "2026-11-27 03:00 UTC"}


def _result(p50, b128, agreement):
    return {"single_p50_ms": p50, "b32_texts_per_s": b128 / 2, "b128_texts_per_s": b128, "b128_agreement": agreement}


def test_the_targets_are_judged_against_pytorch_fp32_eager():
    results = {"torch-fp32-cuda": _result(6.0, 3000, 1.0), "ortpipe-fp16-cuda": _result(1.5, 9000, 0.997)}
    judged = verdicts(results)
    assert judged["latency_target_met"] and judged["throughput_target_met"] and judged["agreement_target_met"]
    slow = verdicts({**results, "ortpipe-fp16-cuda": _result(2.5, 5000, 0.99)})
    assert not slow["latency_target_met"] and not slow["throughput_target_met"] and not slow["agreement_target_met"]
    assert verdicts({"torch-fp32-cuda": _result(6.0, 3000, 1.0)}) == {}


def test_the_table_names_the_card_and_every_path(tmp_path):
    text = table(FACTS, {"torch-fp32-cuda": _result(6.0, 3000, 1.0),
                         "ortpipe-fp16-cuda": {**_result(1.5, 9000, 0.997), "b128_sorted_texts_per_s": 12000}})
    assert "NVIDIA H100, driver 580.1" in text and "| ortpipe-fp16-cuda | 1.50 | 4500 | 9000 | 12000 | 99.70% |" in text
    assert "| torch-fp32-cuda | 6.00 | 1500 | 3000 | — | 100.00% |" in text
    data = tmp_path / "test.tsv"
    data.write_text("sentence\tlabel\nit 's fine\t1\nbad\t0\n")
    assert read_texts(data) == ["it 's fine", "bad"]
