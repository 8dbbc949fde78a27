"""ortpipe's paths on every installed engine against OpenVINO run directly, side by side in one run.

    python -m ortpipe.benchmarks.engines --data ../shared/data/sst2/test.tsv --rounds 3 [--bundle DIR] [--out F]

For each ortpipe candidate (every CPU variant on every installed backend: what ``load(workload=...)``
chooses among) and each OpenVINO peer (its own API on the bundle's files: the static-int8 file, i.e. NNCF's
int8, which is OpenVINO's best on CPUs with VNNI, and the fp32 file at OpenVINO's default precision,
bf16 where the CPU has it), one run measures: bulk, texts per second over the data's sentences
(tokenizing included; ortpipe: ``clf(texts)`` at the variant's default batch size; OpenVINO: the same
Rust tokenizer, length-sorted batches of 32); one sentence, the median of ``"This course is amazing!"``
end to end; accuracy on the labels. Each round runs every path in turn (its bulk pass, then the median
of 100 one-sentence calls), starting from another path each round; figures are medians over the
rounds, and the ratios of ortpipe's best to OpenVINO's best are taken within each round (the
machine's speed drifts between rounds). Needs ``ortpipe[openvino]`` for the OpenVINO rows.
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
SINGLE_CALLS = 100  # one-sentence calls per path per round


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
    """Per path: bulk texts/s and one-sentence ms (medians over the rounds), accuracy; and the per-round
    ratios of ortpipe's best to OpenVINO's best, so that the machine's drift between rounds cancels."""
    labelled = read_labelled_tsv(data, limit=limit)
    texts, gold = labelled.texts, np.array(labelled.labels)
    found = paths(bundle, threads)
    bulk: dict[str, list[float]] = {name: [] for name in found}
    single: dict[str, list[float]] = {name: [] for name in found}
    accuracy: dict[str, float] = {}
    for round_index in range(rounds):
        names = list(found)[round_index % len(found):] + list(found)[:round_index % len(found)]
        for name in names:  # one path at a time: ONNX Runtime's threads spin a while after a call, and
            many, one = found[name]  # interleaving paths call by call would bill that to the next one
            one()
            started = time.perf_counter()
            accuracy[name] = round(float((many(texts) == gold).mean()), 4)
            bulk[name].append(len(texts) / (time.perf_counter() - started))
            single[name].append(median_ms(one, SINGLE_CALLS))
    rows = {name: {"bulk_texts_per_s": round(float(np.median(bulk[name])), 1),
                   "single_ms": round(float(np.median(single[name])), 3), "accuracy": accuracy[name]}
            for name in found}
    return {"paths": rows, **_ratios(bulk, single, rounds)}


def _ratios(bulk: dict, single: dict, rounds: int) -> dict:
    """ortpipe's best against OpenVINO's best, within each round: bulk texts/s, and one-sentence ms."""
    ours = [n for n in bulk if n.startswith("ortpipe")]
    peers = [n for n in bulk if n.startswith("OpenVINO")]
    if not peers:
        return {}
    bulk_ratios = [max(bulk[n][r] for n in ours) / max(bulk[n][r] for n in peers) for r in range(rounds)]
    single_ratios = [min(single[n][r] for n in peers) / min(single[n][r] for n in ours) for r in range(rounds)]
    return {"bulk_vs_openvino_best_by_round": [round(x, 3) for x in bulk_ratios],
            "single_vs_openvino_best_by_round": [round(float(x), 3) for x in single_ratios]}


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
    figures = measure(bundle, args.data, args.rounds, args.threads, args.limit)
    return publish(stamped(bundle=str(bundle), data=str(args.data), threads=args.threads, rounds=args.rounds,
                           texts=len(read_labelled_tsv(args.data, limit=args.limit)), **figures), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
