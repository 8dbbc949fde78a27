"""The compared "paths": one object per way of turning text into a label.

Every path exposes the same two calls, so every workload measures them the
same way, end to end (text in → label out):

- ``one(text) -> str``: classify one text, the way a request handler would.
- ``many(texts, batch_size) -> list[str]``: classify texts in batches of
  ``batch_size``, in the given order.

Paths: ``seed`` (the classic PyTorch walk-through), ``hf-pipeline``,
``optimum`` (ORTModelForSequenceClassification in a pipeline, on ortpipe's
int8 file), ``ortpipe-fp32``, ``ortpipe-optimized``, ``ortpipe-int8`` and,
with a GPU, ``ortpipe-fp32-cuda`` and ``ortpipe-optimized-cuda``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ortpipe.runtime.bundle import ortpipe_home
from ortpipe.runtime.manifest import Manifest
from ortpipe.runtime.providers import cuda_available

PATH_NAMES = ("seed", "hf-pipeline", "optimum", "ortpipe-fp32", "ortpipe-optimized", "ortpipe-int8")
GPU_PATH_NAMES = ("ortpipe-fp32-cuda", "ortpipe-optimized-cuda")
# with ortpipe[openvino]: the bundle's NNCF int8 file through ortpipe on OpenVINO, and through OpenVINO's own API
OPENVINO_PATH_NAMES = ("ortpipe-static-int8-openvino", "openvino-static-int8")
STATIC_INT8 = "static-int8"


def default_path_names(manifest: Manifest | None = None) -> tuple[str, ...]:
    """Every CPU path, the CUDA ones when ONNX Runtime has CUDA, the OpenVINO ones when it is installed (and
    ``manifest``, when given, has the static-int8 variant they run)."""
    from ortpipe.runtime.openvino_model import openvino_installed

    openvino = openvino_installed() and (manifest is None or STATIC_INT8 in manifest.variants)
    return PATH_NAMES + (GPU_PATH_NAMES if cuda_available() else ()) + (OPENVINO_PATH_NAMES if openvino else ())


def check_paths(paths: tuple[str, ...], manifest: Manifest) -> None:
    """Refuse, before anything runs, a path this bundle cannot run: unknown, or OpenVINO's without static int8."""
    from ortpipe.runtime.errors import OrtpipeError

    known = PATH_NAMES + GPU_PATH_NAMES + OPENVINO_PATH_NAMES
    unknown = [p for p in paths if p not in known]
    if unknown:
        raise OrtpipeError(f"unknown path(s) {unknown}; known: {list(known)}")
    needing = [p for p in paths if p in OPENVINO_PATH_NAMES]
    if needing and STATIC_INT8 not in manifest.variants:
        raise OrtpipeError(f"path(s) {needing} run the bundle's {STATIC_INT8} variant, which this bundle lacks "
                           f"(it has {sorted(manifest.variants)}); export with --static-int8 "
                           "(and --quantize-data) to make it")


@dataclass
class ClassifierPath:
    """A loaded path: its name, its two calls, and how it was set up."""

    name: str
    one: Callable[[str], str]
    many: Callable[[list[str], int], list[str]]
    provider: str = "cpu"
    sorted_many: Callable[[list[str], int], list[str]] | None = None  # ortpipe's own length-sorted batching
    classifier: object | None = None  # the TextClassifier behind an ortpipe path
    precision: str = "fp32"  # the arithmetic its matmuls run in: "fp32" or "int8"


def checkpoint_for(bundle_dir: Path, manifest: Manifest) -> Path:
    """The PyTorch checkpoint the bundle was exported from (rebuilt for the default model)."""
    from ortpipe.export.default_bundle import DEFAULT_SOURCE_NAME
    from ortpipe.export.default_model import build_default_checkpoint, verify_adapter

    source = Path(manifest.source_model)
    if source.is_dir():
        return source
    if manifest.source_model != DEFAULT_SOURCE_NAME:
        raise FileNotFoundError(f"the bundle's source model {manifest.source_model!r} is not a local folder; "
                                "the PyTorch paths need it")
    digest = verify_adapter()
    target = ortpipe_home() / "checkpoints" / f"sst2-minilm-{digest[:12]}"
    if not (target / "config.json").is_file():
        build_default_checkpoint(target)
    return target


def _torch_setup(checkpoint: Path, threads: int):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    return tokenizer, model


def load_seed(checkpoint: Path, threads: int) -> ClassifierPath:
    """The classic walk-through: tokenizer → eager model under no_grad → softmax → argmax → label."""
    import torch

    tokenizer, model = _torch_setup(checkpoint, threads)
    id2label = model.config.id2label

    def many(texts: list[str], batch_size: int) -> list[str]:
        labels = []
        for start in range(0, len(texts), batch_size):
            inputs = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                outputs = model(**inputs)
            predictions = torch.nn.functional.softmax(outputs.logits, dim=-1)
            labels.extend(id2label[i] for i in predictions.argmax(dim=-1).tolist())
        return labels

    return ClassifierPath("seed", lambda text: many([text], 1)[0], many)


def _pipeline_path(name: str, pipe) -> ClassifierPath:
    def many(texts: list[str], batch_size: int) -> list[str]:
        return [r["label"] for r in pipe(texts, batch_size=batch_size, truncation=True)]

    return ClassifierPath(name, lambda text: pipe(text, truncation=True)[0]["label"], many)


def load_hf_pipeline(checkpoint: Path, threads: int) -> ClassifierPath:
    from transformers import pipeline

    tokenizer, model = _torch_setup(checkpoint, threads)
    return _pipeline_path("hf-pipeline", pipeline("text-classification", model=model, tokenizer=tokenizer,
                                                  device="cpu"))


def load_optimum(checkpoint: Path, bundle_dir: Path, manifest: Manifest, threads: int,
                 variant: str = "int8") -> ClassifierPath:
    """optimum's ORTModelForSequenceClassification in a pipeline, on the bundle's own ONNX file."""
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    folder = Path(tempfile.mkdtemp(prefix="ortpipe-bench-optimum-"))
    shutil.copyfile(bundle_dir / manifest.variants[variant].file, folder / "model.onnx")
    shutil.copyfile(checkpoint / "config.json", folder / "config.json")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    model = ORTModelForSequenceClassification.from_pretrained(folder, file_name="model.onnx",
                                                              session_options=options,
                                                              provider="CPUExecutionProvider")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    path = _pipeline_path("optimum", pipeline("text-classification", model=model, tokenizer=tokenizer))
    path.precision = "int8" if manifest.variants[variant].quantized else "fp32"
    return path


def load_ortpipe(bundle_dir: Path, variant: str, threads: int, provider: str = "cpu",
                 backend: str | None = None) -> ClassifierPath:
    from ortpipe.runtime import TextClassifier

    clf = TextClassifier.load(bundle_dir, variant=variant, provider=provider, threads=threads, backend=backend)

    def many(texts: list[str], batch_size: int) -> list[str]:
        return [r["label"] for r in clf(texts, batch_size=batch_size, sort_by_length=False)]

    def sorted_many(texts: list[str], batch_size: int) -> list[str]:
        return [r["label"] for r in clf(texts, batch_size=batch_size)]

    name = f"ortpipe-{variant}" + ("-cuda" if provider == "cuda" else "") + ("-openvino" if backend else "")
    precision = "int8" if clf.bundle.variant.quantized else "fp32"
    return ClassifierPath(name, lambda text: clf(text)[0]["label"], many, clf.provider, sorted_many, clf, precision)


def load_openvino(bundle_dir: Path, threads: int) -> ClassifierPath:
    """OpenVINO's own API on the bundle's static-int8 file (NNCF's int8), fed by the bundle's tokenizer."""
    from ortpipe.benchmarks.engines import OpenVinoPeer
    from ortpipe.runtime import TextClassifier

    base = TextClassifier.load(bundle_dir, variant="fp32", threads=threads)
    peer = OpenVinoPeer(base, bundle_dir / "model.static-int8.onnx", "f32", threads)

    def many(texts: list[str], batch_size: int) -> list[str]:
        return [base.labels[i] for start in range(0, len(texts), batch_size)
                for i in peer.run(texts[start:start + batch_size]).argmax(1)]

    return ClassifierPath("openvino-static-int8", lambda text: base.labels[int(peer.run([text]).argmax())], many,
                          "cpu", precision="int8")


def load_path(name: str, bundle_dir: Path, manifest: Manifest, threads: int) -> ClassifierPath:
    """Load one path by name (see :data:`PATH_NAMES`)."""
    if name == "ortpipe-static-int8-openvino":
        return load_ortpipe(bundle_dir, "static-int8", threads, backend="openvino")
    if name == "openvino-static-int8":
        return load_openvino(bundle_dir, threads)
    if name.startswith("ortpipe-"):
        variant, _, device = name[len("ortpipe-"):].partition("-")
        return load_ortpipe(bundle_dir, variant, threads, provider=device or "cpu")
    checkpoint = checkpoint_for(bundle_dir, manifest)
    if name == "seed":
        return load_seed(checkpoint, threads)
    if name == "hf-pipeline":
        return load_hf_pipeline(checkpoint, threads)
    if name == "optimum":
        return load_optimum(checkpoint, bundle_dir, manifest, threads)
    raise ValueError(f"unknown path {name!r}; known: {PATH_NAMES}")
