"""``ortpipe export`` and ``ortpipe finetune`` (need ``pip install 'ortpipe[export]'``)."""

from __future__ import annotations

import argparse

import json
import logging
import sys
from pathlib import Path

from ortpipe.export.finetune import FinetuneConfig
from ortpipe.runtime.errors import OrtpipeError


def _require_export_extra() -> None:
    try:
        import optimum.exporters.onnx  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise OrtpipeError(f"this command needs the export extra ({exc.name} is missing): "
                           "pip install torch==2.13.0 first (the CPU build; an unpinned torch pulls a CUDA build of "
                           "several GB), then pip install 'ortpipe[export]'. Or build the bundle on another machine "
                           "and copy its folder here: the runtime needs only that") from exc


def add_commands(subparsers) -> None:
    export = subparsers.add_parser(
        "export", help="convert a Hugging Face sequence classifier into an ortpipe bundle",
        description="Export MODEL (a checkpoint folder or hub id) to ONNX, validate it against PyTorch, "
                    "optimize and quantize it, and write a bundle. With no MODEL, build the default "
                    "sentiment bundle into $ORTPIPE_HOME (default ~/.cache/ortpipe).")
    export.add_argument("model", nargs="?", metavar="MODEL")
    export.add_argument("--out", help="bundle folder to write")
    export.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="skip ONNX Runtime's transformer fusions")
    export.add_argument("--quantize", default="int8", choices=("int8", "none"),
                        help="add a dynamic int8 variant (default) or not")
    export.add_argument("--static-int8", action=argparse.BooleanOptionalAction, default=None,
                        help="add NNCF's static int8 variant, the fast one on OpenVINO (load(backend='openvino'), "
                             "load(workload=...)); default: when ortpipe[openvino] is installed")
    export.add_argument("--quantize-data", type=Path,
                        help="labelled TSV (as --eval-data) whose first 300 texts calibrate static int8 "
                             "(default: 300 texts spread over --eval-data, else the built-in probe texts; "
                             "default bundle: SST-2's train.tsv)")
    export.add_argument("--no-fp16", dest="fp16", action="store_false",
                        help="skip the float16 variant for CUDA (validated at load on the first CUDA machine)")
    export.add_argument("--eval-data", type=Path,
                        help="labelled TSV to measure each variant's accuracy on: a header row 'sentence<TAB>label', "
                             "then one text and its label per line; a label is the model's label id or one of its "
                             "label names (any case)")
    export.add_argument("--calibration-data", type=Path,
                        help="labelled TSV (as --eval-data) to fit each variant's temperature on: the first half "
                             "fits, the second half measures (default: --eval-data, when given)")
    export.add_argument("--target-precision", type=float, metavar="P",
                        help="record the threshold with the most coverage whose precision on the calibration data "
                             "is at least P with 90%% confidence (threshold='auto'; default bundle: 0.95)")
    export.add_argument("--atol", type=float, default=1e-4, help="max |Δlogit| against PyTorch (default 1e-4)")
    export.add_argument("--opset", type=int, help="ONNX opset (default: optimum's choice)")
    export.add_argument("--threads", type=int, help="ONNX Runtime threads for validation and timing")
    export.add_argument("--window", type=int,
                        help="the recommended window for long texts, in tokens (recorded in the manifest; what "
                             "window='auto' and --window auto use; default bundle: 256)")
    export.set_defaults(run=_run_export)
    _add_calibrate(subparsers)
    _add_finetune(subparsers)


def _add_calibrate(subparsers) -> None:
    calibrate = subparsers.add_parser(
        "calibrate", help="fit a bundle's temperatures (and a threshold) on labelled data",
        description="Fit one temperature per variant of BUNDLE on labelled DATA (a TSV as for --eval-data; a "
                    "multi-label model's label cells are comma-separated lists): the first part of the file fits, "
                    "the --held-out last part measures ECE and log-loss before and after. Written into the "
                    "manifest; the model files are not touched. Needs only the runtime.")
    calibrate.add_argument("bundle", type=Path, metavar="BUNDLE")
    calibrate.add_argument("--data", type=Path, required=True)
    calibrate.add_argument("--target-precision", type=float, metavar="P",
                           help="also record the threshold with the most coverage whose precision is at least P "
                                "with probability 1 - DELTA (learn-then-test; threshold='auto' uses it)")
    calibrate.add_argument("--delta", type=float, default=0.1, help="the guarantee's error probability (0.1)")
    calibrate.add_argument("--held-out", type=float, default=0.5,
                           help="share of the rows, at the file's end, kept out of the fit to measure on (0.5)")
    calibrate.add_argument("--threads", type=int, help="ONNX Runtime threads")
    calibrate.set_defaults(run=_run_calibrate)


def _add_finetune(subparsers) -> None:
    finetune = subparsers.add_parser(
        "finetune", help="train the default sentiment adapter (LoRA) on SST-2",
        description="Fine-tune the packaged MiniLM with LoRA on DATA/train.tsv, select on "
                    "validation.tsv, report on test.tsv. Resumes from WORK/checkpoint.")
    finetune.add_argument("--data", type=Path, required=True, help="folder with the SST-2 TSV files")
    finetune.add_argument("--work", type=Path, default=Path("runs/finetune"), help="checkpoints go here")
    finetune.add_argument("--out", type=Path, help="final adapter folder (default WORK/adapter)")
    finetune.add_argument("--epochs", type=float, help=f"default {FinetuneConfig.epochs:g}")
    finetune.add_argument("--learning-rate", type=float, help=f"default {FinetuneConfig.learning_rate:g}")
    finetune.add_argument("--seed", type=int, help=f"default {FinetuneConfig.seed}")
    finetune.add_argument("--ema-decay", type=float,
                          help="keep an exponential moving average of the weights (e.g. 0.999) and select on it")
    finetune.set_defaults(run=_run_finetune)


def _run_export(args) -> int:
    _require_export_extra()
    from ortpipe.export.bundle import BuildOptions
    from ortpipe.export.default_bundle import build_default_bundle, build_model_bundle

    options = BuildOptions(optimize=args.optimize, quantize=None if args.quantize == "none" else args.quantize,
                           atol=args.atol, eval_data=args.eval_data, opset=args.opset, threads=args.threads,
                           fp16=args.fp16, window=args.window, calibration_data=args.calibration_data,
                           target_precision=args.target_precision, static_int8=args.static_int8,
                           quantize_data=args.quantize_data)
    if args.model is None:
        manifest, out = build_default_bundle(args.out, options)
    else:
        if args.out is None:
            raise OrtpipeError("--out DIR is required when MODEL is given")
        manifest, out = build_model_bundle(args.model, args.out, options)
    summary = {name: {"file": v.file, **{k: v.validation[k] for k in
                                         ("max_abs_diff", "label_agreement", "accuracy", "passed", "reason")
                                         if k in v.validation},
                      "single_sentence_ms": v.details.get("timing_cpu", {}).get("single_sentence_ms")}
               for name, v in manifest.variants.items()}
    print(json.dumps({"bundle": str(out), "default_variant": manifest.default_variant, "variants": summary},
                     indent=2))
    return 0


def _run_calibrate(args) -> int:
    from ortpipe.export.calibrate import CalibrationSettings, calibrate_bundle

    manifest = calibrate_bundle(args.bundle, CalibrationSettings(args.data, args.target_precision, args.delta,
                                                                 args.held_out, args.threads))
    print(json.dumps({name: v.calibration for name, v in manifest.variants.items()}, indent=2))
    return 0


def _run_finetune(args) -> int:
    _require_export_extra()
    from ortpipe.export.finetune import finetune

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    chosen = {"epochs": args.epochs, "learning_rate": args.learning_rate, "seed": args.seed,
              "ema_decay": args.ema_decay}
    config = FinetuneConfig(**{k: v for k, v in chosen.items() if v is not None})
    card = finetune(args.data, args.work, args.out, config)
    adapter_dir = args.out or args.work / "adapter"
    if (args.data / "test.tsv").is_file():  # export it as the default bundle would, and record what it scores
        from ortpipe.export.bundle import BuildOptions
        from ortpipe.export.default_bundle import build_default_bundle, record_bundle_accuracy

        manifest, _ = build_default_bundle(args.work / "bundle", BuildOptions(eval_data=args.data / "test.tsv"),
                                           adapter_dir=adapter_dir)
        card = record_bundle_accuracy(adapter_dir, manifest)
    print(json.dumps({k: card[k] for k in ("best_step", "validation_accuracy", "test_accuracy",
                                           "bundle_test_accuracy", "training_seconds", "weights_sha256")
                      if k in card}, indent=2))
    return 0
