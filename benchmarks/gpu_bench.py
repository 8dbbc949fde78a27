"""GPU benchmark: PyTorch eager on CUDA (fp32, fp16) against ortpipe on CUDA (fp32, fp16).

    python -m ortpipe.benchmarks.gpu_bench --bundle B --checkpoint C --texts test.tsv --out gpu/

Every path gets the same texts in the same order: one sentence end to end
(p50 over 300 calls), then all texts in file-order batches of 32 and of 128
(best of 3 passes; ortpipe also length-sorted). Labels are compared with the
CPU fp32 labels (ortpipe's ``optimized`` variant, else ``fp32``, on the CPU
provider). Needs torch with CUDA, transformers and onnxruntime-gpu; it runs
on the GPU machine from ``benchmarks/gpu_check.sh``. Writes ``gpu.json`` and
``gpu.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ortpipe.benchmarks.workloads import SHORT_SENTENCE
from ortpipe.runtime.timing import time_calls

BATCH_SIZES = (32, 128)
TARGETS = {"latency": 1 / 3, "throughput_b128": 2.0, "fp16_agreement": 0.995}


def read_texts(path: Path) -> list[str]:
    """The sentences of a GLUE-style TSV (header ``sentence<TAB>label``)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[1:] if line.strip()]


def torch_path(checkpoint: Path, half: bool):
    """The seed walk-through on CUDA: tokenizer → eager model under inference_mode → argmax."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval().to("cuda")
    if half:
        model = model.half()

    def logits(texts: list[str], batch_size: int, sort: bool = False) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), batch_size):
            inputs = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                               return_tensors="pt").to("cuda")
            with torch.inference_mode():
                rows.append(model(**inputs).logits.float().cpu().numpy())
        return np.concatenate(rows)

    return logits


def ortpipe_path(bundle: Path, variant: str, provider: str = "cuda"):
    from ortpipe.runtime import TextClassifier

    clf = TextClassifier.load(bundle, variant=variant, provider=provider, memory="fast")

    def logits(texts: list[str], batch_size: int, sort: bool = False) -> np.ndarray:
        from ortpipe.export.validate import logits_in_batches

        return logits_in_batches(clf.model, clf.tokenizer, texts, batch_size, sort)

    return logits, clf


def measure(logits, texts: list[str], reference: np.ndarray, sortable: bool) -> dict:
    logits([SHORT_SENTENCE], 1)
    single = time_calls(lambda: logits([SHORT_SENTENCE], 1), 300, warmup=20)
    result = {"single_p50_ms": float(np.median(single) * 1000)}
    for batch_size in BATCH_SIZES:
        for sort in (False, True) if sortable else (False,):
            best, out = float("inf"), None
            for _ in range(3):
                start = time.perf_counter()
                out = logits(texts, batch_size, sort)
                best = min(best, time.perf_counter() - start)
            key = f"b{batch_size}" + ("_sorted" if sort else "")
            result[f"{key}_texts_per_s"] = len(texts) / best
            result[f"{key}_agreement"] = float((out.argmax(-1) == reference).mean())
    return result


def device_facts() -> dict:
    import onnxruntime
    import torch

    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        driver = "unknown"
    return {"card": torch.cuda.get_device_name(0), "driver": driver, "cuda_torch": torch.version.cuda,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def table(facts: dict, results: dict) -> str:
    lines = [f"{facts['card']}, driver {facts['driver']}, torch {facts['torch']} (CUDA {facts['cuda_torch']}), "
             f"onnxruntime-gpu {facts['onnxruntime']}, {facts['date']}", "",
             "| path | 1 sentence p50 ms | b32 texts/s | b128 texts/s | b128 sorted texts/s "
             "| agreement with CPU fp32 |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        sorted_rate = r.get("b128_sorted_texts_per_s")
        lines.append(f"| {name} | {r['single_p50_ms']:.2f} | {r['b32_texts_per_s']:.0f} | "
                     f"{r['b128_texts_per_s']:.0f} | "
                     f"{'—' if sorted_rate is None else f'{sorted_rate:.0f}'} | {r['b128_agreement']:.2%} |")
    return "\n".join(lines)


def verdicts(results: dict) -> dict:
    """The issue's targets: ortpipe fp16 against PyTorch fp32 eager, and fp16 label agreement."""
    fp16, seed = results.get("ortpipe-fp16-cuda"), results.get("torch-fp32-cuda")
    if not fp16 or not seed:
        return {}
    return {"latency_ratio": fp16["single_p50_ms"] / seed["single_p50_ms"],
            "latency_target_met": fp16["single_p50_ms"] <= TARGETS["latency"] * seed["single_p50_ms"],
            "throughput_b128_ratio": fp16["b128_texts_per_s"] / seed["b128_texts_per_s"],
            "throughput_target_met": fp16["b128_texts_per_s"] >= TARGETS["throughput_b128"] * seed["b128_texts_per_s"],
            "fp16_agreement": fp16["b128_agreement"],
            "agreement_target_met": fp16["b128_agreement"] >= TARGETS["fp16_agreement"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, help="the PyTorch checkpoint (skip the PyTorch paths without)")
    parser.add_argument("--texts", type=Path, required=True, help="SST-2 test.tsv (872 sentences)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from ortpipe.runtime import read_manifest

    texts = read_texts(args.texts)
    variants = read_manifest(args.bundle).variants
    cpu_variant = "optimized" if "optimized" in variants else "fp32"
    cpu_logits, _ = ortpipe_path(args.bundle, cpu_variant, provider="cpu")
    reference = cpu_logits(texts, 32).argmax(-1)
    results = {}
    if args.checkpoint:
        for half in (False, True):
            results[f"torch-{'fp16' if half else 'fp32'}-cuda"] = measure(torch_path(args.checkpoint, half), texts,
                                                                         reference, sortable=False)
    for variant in (cpu_variant, "fp16"):
        if variant in variants:
            logits, clf = ortpipe_path(args.bundle, variant)
            name = f"ortpipe-{'fp32' if variant == cpu_variant else 'fp16'}-cuda"
            results[name] = {**measure(logits, texts, reference, sortable=True), "variant": variant,
                             "probe_check": clf.check().as_dict(), "placement": clf.model.placement()}
    facts = device_facts()
    report = {**facts, "texts": len(texts), "cpu_reference": cpu_variant, "results": results,
              "targets": TARGETS, "verdicts": verdicts(results)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu.md").write_text(table(facts, results) + "\n\n" + json.dumps(report["verdicts"], indent=1) + "\n")
    print(table(facts, results))
    print(json.dumps(report["verdicts"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
