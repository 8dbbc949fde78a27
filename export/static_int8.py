"""The ``static-int8`` variant: NNCF's post-training int8 (fixed, calibrated scales, QDQ) of the fp32 graph.

Why NNCF and not ONNX Runtime's ``quantize_static``: with plain MinMax calibration the latter lost
3 points of SST-2 accuracy (86.1-86.6 % against 89.6 %; docs/any-cpu.md); NNCF's transformer recipe
(SmoothQuant, fast bias correction, the attention and layer-norm patterns kept in float) lost none.
The file is one ONNX graph of QuantizeLinear/DequantizeLinear pairs, so the bundle contract (one
hash-checked ``.onnx`` per variant) holds, and both backends read it: OpenVINO fuses it into int8
kernels (its fast path), ONNX Runtime runs it too (slowly: measured, never chosen for speed).
Fixed scales make it batch-invariant: a text's scores do not depend on its batch neighbours, so its
default batch size is the fast one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ortpipe.export.onnx_export import ExportError
from ortpipe.export.validate import PROBE_TEXTS, compare_with_onnx

if TYPE_CHECKING:
    from ortpipe.export.bundle import BuildOptions
    from ortpipe.export.data import LabelledTexts
    from ortpipe.export.variants import Candidate, Source
    from ortpipe.runtime.inference import OnnxModel

STATIC_INT8_FILE = "model.static-int8.onnx"
CALIBRATION_TEXTS = 300  # NNCF's default subset size


def nncf_installed() -> bool:
    """Whether NNCF (``ortpipe[openvino]``) imports here."""
    return importlib.util.find_spec("nncf") is not None


def quantize_static_int8(source: Path, target: Path, feeds: Sequence[dict]) -> dict:
    """Write NNCF's int8 QDQ copy of the ONNX file ``source`` to ``target``, calibrated on ``feeds``
    (one input dict per text); returns the settings used, for the manifest."""
    import nncf
    import onnx

    if not feeds:
        raise ExportError("static int8 needs calibration texts")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    try:  # NNCF draws progress bars on stdout, where `ortpipe export` prints its JSON summary
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(onnx.load(str(source)), nncf.Dataset(list(feeds)),
                                      model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))
        onnx.save(quantized, str(target))
    except Exception as exc:
        raise ExportError(f"NNCF's int8 quantization failed on {source}: {type(exc).__name__}: {exc}") from exc
    return {"method": "static", "tool": f"nncf {nncf.__version__}", "format": "QDQ",
            "model_type": "transformer", "calibration_texts": len(feeds), "quantized_from": source.name}


def calibration_texts(options: "BuildOptions", eval_set: "LabelledTexts | None") -> tuple[list[str], str]:
    """The texts NNCF calibrates on, and where they come from: ``--quantize-data``, else the eval set, else
    the built-in probe texts (at most :data:`CALIBRATION_TEXTS`)."""
    from ortpipe.export.data import read_labelled_tsv

    if options.quantize_data is not None:
        texts = read_labelled_tsv(options.quantize_data, limit=CALIBRATION_TEXTS).texts
        return texts, f"{Path(options.quantize_data).name} (first {len(texts)} rows)"
    if eval_set is not None:
        step = max(1, len(eval_set) // CALIBRATION_TEXTS)
        texts = eval_set.texts[::step][:CALIBRATION_TEXTS]
        return texts, f"{eval_set.path.name} ({len(texts)} rows spread over it)"
    return list(PROBE_TEXTS), "ortpipe's built-in probe texts"


def static_int8_variant(source: "Source", staging: Path, options: "BuildOptions", fp32: "OnnxModel",
                        eval_set: "LabelledTexts | None") -> "Candidate":
    """NNCF int8 of the fp32 graph, validated on the backend that runs it fast (OpenVINO where installed,
    else ONNX Runtime), with int8's gate: label agreement with fp32 at batch 1 and 32."""
    from ortpipe.export.variants import VARIANT_FILES, Candidate
    from ortpipe.runtime.backends import installed_backends, make_model

    texts, origin = calibration_texts(options, eval_set)
    feeds = [fp32.feed(source.tokenizer([text])) for text in texts]
    settings = quantize_static_int8(staging / VARIANT_FILES["fp32"], staging / STATIC_INT8_FILE, feeds)
    backend = "openvino" if "openvino" in installed_backends() else "onnxruntime"
    model = make_model(backend, staging / STATIC_INT8_FILE, provider="cpu", threads=options.threads)
    probe = list(PROBE_TEXTS) + (eval_set.texts if eval_set else [])
    checks = {size: compare_with_onnx(model, fp32, source.tokenizer, probe, size) for size in (1, 32)}
    agreement = min(c.label_agreement for c in checks.values())
    return Candidate(model, {"against": "fp32 onnx", "validated_with": backend, "label_agreement": agreement,
                             "max_abs_diff": max(c.max_abs_diff for c in checks.values()),
                             "texts": len(probe), "batch_sizes": list(checks),
                             "min_label_agreement": options.min_int8_agreement,
                             "passed": agreement >= options.min_int8_agreement},
                     {**settings, "calibrated_on": origin, "fast_backend": "openvino"})
