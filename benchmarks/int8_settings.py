"""Measure int8 quantization settings against fp32, on the CPU this runs on.

    python -m ortpipe.benchmarks.int8_settings --bundle B --data sst2/test.tsv --work runs/int8 --json native.json
    # the same files on ONNX Runtime's AVX2-only kernels (QEMU emulates a Zen 1 EPYC; numbers only, no timing):
    qemu-x86_64 -cpu EPYC-v1 .venv/bin/python -m ortpipe.benchmarks.int8_settings ... --no-timing \
        --reference runs/int8/fp32.npy --cpu-label "EPYC-v1 (qemu)"

Each setting of :data:`ortpipe.export.quantize.CANDIDATES` is quantized once
into ``--work`` (later runs reuse the file, so every CPU judges the same
bytes), then scored on the labelled set at batch 1 and at batch 32 (the
runtime's length-sorted loop): label agreement with fp32 computed here, max
|Δlogit|, accuracy, and whether it passes the export gate. With timing, the
single-sentence p50 and the batch-32 throughput of the session call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ortpipe.export.data import read_labelled_tsv
from ortpipe.export.quantize import CANDIDATES, QuantSettings, quantize_int8
from ortpipe.export.validate import logits_in_batches
from ortpipe.runtime.inference import OnnxModel
from ortpipe.runtime.machine import describe_machine
from ortpipe.runtime.manifest import read_manifest
from ortpipe.runtime.probes import compare
from ortpipe.runtime.timing import median_ms
from ortpipe.runtime.tokenize import TextTokenizer

GATE_AGREEMENT = 0.98
GATE_ACCURACY_DROP = 0.007


def calibration_feeds(tokenizer: TextTokenizer, path: Path, rows: int, input_names) -> list[dict]:
    """``rows`` training sentences spread evenly over ``path``, as batches of 32 model inputs."""
    data = read_labelled_tsv(path)
    step = max(1, len(data) // rows)
    texts = data.texts[::step][:rows]
    feeds = []
    for start in range(0, len(texts), 32):
        encoded = tokenizer(texts[start:start + 32])
        feeds.append({name: getattr(encoded, name) for name in input_names})
    return feeds


def score(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
    """Agreement and max |Δlogit| against the fp32 reference (as the probes compare), and accuracy."""
    return {**compare(logits, reference), "accuracy": float((logits.argmax(-1) == labels).mean())}


def timing(model: OnnxModel, tokenizer: TextTokenizer, texts: list[str]) -> dict:
    one = tokenizer(["This course is amazing!"])
    bulk_ms = median_ms(lambda: logits_in_batches(model, tokenizer, texts, 32), repeats=3)
    return {"single_p50_ms": median_ms(lambda: model(one), 300, warmup=20),
            "batch32_texts_per_s": len(texts) / bulk_ms * 1000}


def measure(settings: QuantSettings, args, tokenizer, texts, labels, reference, fp32_accuracy) -> dict:
    target = args.work / f"model.{settings.name}.onnx"
    if not target.is_file():
        manifest = read_manifest(args.bundle)
        source = args.bundle / ("model.onnx" if settings.method == "static" else "model.optimized.onnx")
        feeds = (calibration_feeds(tokenizer, args.calibration, args.calibration_rows, manifest.input_names)
                 if settings.method == "static" else None)
        quantize_int8(source, target, settings, feeds)
    model = OnnxModel(target, provider="cpu", threads=args.threads)
    result = {"settings": settings.as_dict(), "file_mb": round(target.stat().st_size / 2**20, 1)}
    for batch_size in (1, 32):
        figures = score(logits_in_batches(model, tokenizer, texts, batch_size), reference, labels)
        figures["accuracy_drop"] = fp32_accuracy - figures["accuracy"]
        figures["passed"] = (figures["agreement"] >= GATE_AGREEMENT
                             and figures["accuracy_drop"] <= GATE_ACCURACY_DROP)
        result[f"batch{batch_size}"] = figures
    result["passed"] = result["batch1"]["passed"] and result["batch32"]["passed"]
    if not args.no_timing:
        result["timing"] = timing(model, tokenizer, texts)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle with model.onnx and model.optimized.onnx")
    parser.add_argument("--data", type=Path, required=True, help="labelled TSV to score on (SST-2 test.tsv)")
    parser.add_argument("--calibration", type=Path, help="labelled TSV for static calibration (SST-2 train.tsv)")
    parser.add_argument("--calibration-rows", type=int, default=512)
    parser.add_argument("--work", type=Path, required=True, help="folder for the quantized files (reused)")
    parser.add_argument("--settings", nargs="+", help="names of the settings to measure (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-timing", action="store_true", help="numbers only (for an emulated CPU)")
    parser.add_argument("--cpu-label", help="name the CPU in the report (e.g. an emulated one)")
    parser.add_argument("--reference", type=Path,
                        help="fp32 reference logits (.npy): read if it exists, else computed here and written "
                             "(fp32 agrees across CPUs to ~1e-5; under emulation it is the slow part)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    manifest = read_manifest(args.bundle)
    tokenizer = TextTokenizer(args.bundle / manifest.tokenizer_file, manifest.max_length, manifest.pad_token_id)
    data = read_labelled_tsv(args.data)
    texts, labels = data.texts, np.asarray(data.labels)
    args.work.mkdir(parents=True, exist_ok=True)
    fp32 = OnnxModel(args.bundle / "model.optimized.onnx", provider="cpu", threads=args.threads)
    if args.reference and args.reference.is_file():
        reference = np.load(args.reference)
    else:
        reference = logits_in_batches(fp32, tokenizer, texts, 32)
        if args.reference:
            np.save(args.reference, reference)
    fp32_accuracy = float((reference.argmax(-1) == labels).mean())
    report = {"machine": describe_machine(), "cpu_label": args.cpu_label, "data": f"{data.path.name} ({len(data)})",
              "reference": str(args.reference) if args.reference else "computed here",
              "fp32_accuracy": fp32_accuracy, "threads": args.threads, "settings": {}}
    if not args.no_timing:
        report["fp32_timing"] = timing(fp32, tokenizer, texts)
    chosen = [s for s in CANDIDATES if not args.settings or s.name in args.settings]
    for settings in chosen:
        if settings.method == "static" and not args.calibration:
            continue
        report["settings"][settings.name] = result = measure(settings, args, tokenizer, texts, labels, reference,
                                                             fp32_accuracy)
        print(json.dumps({settings.name: result}), file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
