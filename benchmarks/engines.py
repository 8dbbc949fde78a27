"""ortpipe's paths on every installed engine against OpenVINO run directly, side by side in one run.

    python -m ortpipe.benchmarks.engines --data ../shared/data/sst2/test.tsv --rounds 3 [--bundle DIR] [--out F]

For each ortpipe candidate (every CPU variant on every installed backend: what ``load(workload=...)``
chooses among) and each OpenVINO peer (its own API on the bundle's files: the static-int8 file, i.e. NNCF's
int8, which is OpenVINO's best on CPUs with VNNI, and the fp32 file at OpenVINO's default precision,
bf16 where the CPU has it), one run measures: bulk, texts per second over the data's sentences
(tokenizing included; ortpipe: ``clf(texts)`` at the variant's default batch size; OpenVINO: the same
Rust tokenizer, length-sorted batches of 32); one sentence, the median of ``"This course is amazing!"``
end to end; accuracy on the labels. Rounds alternate the paths, and each figure is the best of the
rounds (the machine's speed drifts between them). Needs ``ortpipe[openvino]`` for the OpenVINO rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ortpipe.benchmarks.report import publish, stamped
from ortpipe.export.data import read_labelled_tsv
from ortpipe.runtime import TextClassifier
from ortpipe.runtime.backends import installed_backends
from ortpipe.runtime.bundle import open_bundle
from ortpipe.runtime.fastest import candidates
from ortpipe.runtime.timing import median_ms

SENTENCE = "This course is amazing!"


class OpenVinoPeer:
    """OpenVINO's own API on a bundle file, fed by the bundle's tokenizer: what a user of OpenVINO writes."""

    def __init__(self, clf: TextClassifier, file: Path, precision: str | None, threads: int | None):
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(file), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.names = [port.get_any_name() for port in self.compiled.inputs]
        self.tokenizer = clf.tokenizer
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def run(self, texts: list[str]) -> np.ndarray:
        """Logits of ``texts`` in one OpenVINO call (padded to the longest)."""
        batch = self.tokenizer.collate(self.tokenizer.encode(texts))
        self.request.infer({name: getattr(batch, name) for name in self.names})
        return np.array(self.request.get_output_tensor(0).data)

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Logits of ``texts`` in length-sorted batches of 32."""
        encodings = self.tokenizer.encode(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        logits = np.zeros((len(texts), self.compiled.outputs[0].get_partial_shape()[-1].get_length()), np.float32)
        for start in range(0, len(order), 32):
            rows = order[start:start + 32]
            batch = self.tokenizer.collate([encodings[i] for i in rows])
            self.request.infer({name: getattr(batch, name) for name in self.names})
            logits[rows] = self.request.get_output_tensor(0).data
        return logits


def paths(bundle: Path, threads: int | None) -> dict:
    """name → (call on a list of texts → labels ids, call on one text)."""
    found = {}
    for variant, backend in candidates(open_bundle(bundle), installed_backends()):
        clf = TextClassifier.load(bundle, variant=variant, backend=backend, threads=threads)
        if not clf.check().passed:
            continue
        ids = {label: i for i, label in enumerate(clf.labels)}
        found[f"ortpipe {variant} on {backend} (batch {clf.default_batch_size()})"] = (
            lambda texts, clf=clf, ids=ids: np.array([ids[r["label"]] for r in clf(texts)]),
            lambda clf=clf: clf(SENTENCE))
    if "openvino" in installed_backends():
        base = TextClassifier.load(bundle, variant="fp32", threads=threads)
        for file, precision in (("model.static-int8.onnx", "f32"), ("model.onnx", None)):
            if (bundle / file).is_file():
                peer = OpenVinoPeer(base, bundle / file, precision, threads)
                found[f"OpenVINO direct: {file}, {peer.precision}"] = (
                    lambda texts, peer=peer: peer(texts).argmax(1), lambda peer=peer: peer([SENTENCE]))
    return found


def measure(bundle: Path, data: Path, rounds: int, threads: int | None, limit: int | None) -> dict:
    labelled = read_labelled_tsv(data, limit=limit)
    texts, gold = labelled.texts, np.array(labelled.labels)
    rows: dict[str, dict] = {}
    found = paths(bundle, threads)
    for _ in range(rounds):
        for name, (bulk, one) in found.items():
            one()
            started = time.perf_counter()
            predicted = bulk(texts)
            per_s = len(texts) / (time.perf_counter() - started)
            single = median_ms(one, 50)
            row = rows.setdefault(name, {"bulk_texts_per_s": 0.0, "single_ms": float("inf")})
            row["bulk_texts_per_s"] = round(max(row["bulk_texts_per_s"], per_s), 1)
            row["single_ms"] = round(min(row["single_ms"], single), 3)
            row["accuracy"] = round(float((predicted == gold).mean()), 4)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="default: the default bundle")
    parser.add_argument("--data", type=Path, required=True, help="labelled TSV (SST-2's test.tsv)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, help="the first N rows of --data only")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args(argv)
    bundle = open_bundle(args.bundle, verify=False).path
    rows = measure(bundle, args.data, args.rounds, args.threads, args.limit)
    best_peer = max((r for n, r in rows.items() if n.startswith("OpenVINO")), default=None,
                    key=lambda r: r["bulk_texts_per_s"])
    ours = [r for n, r in rows.items() if n.startswith("ortpipe")]
    ratios = {} if best_peer is None else {
        "bulk_vs_openvino_best": round(max(r["bulk_texts_per_s"] for r in ours) / best_peer["bulk_texts_per_s"], 3),
        "single_vs_openvino_best": round(min(r["single_ms"] for r in (v for n, v in rows.items()
                                                                        if n.startswith("OpenVINO")))
                                         / min(r["single_ms"] for r in ours), 3)}
    return publish(stamped(bundle=str(bundle), data=str(args.data), threads=args.threads, rounds=args.rounds,
                           texts=len(read_labelled_tsv(args.data, limit=args.limit)), paths=rows, **ratios), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
