"""How ``TextClassifier.load`` settles on a variant and a backend, and checks it on this machine.

With no variant: on CUDA, fp16 once it passes its probes there; on the CPU, the manifest's default
(ONNX Runtime) or ``static-int8`` (OpenVINO), kept only if it passes its probe check here, else the
best float variant with one warning. With ``workload``: the variant and backend measured fastest
for that workload here (:mod:`.fastest`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ortpipe.runtime.backends import check_backend
from ortpipe.runtime.bundle import Bundle, open_bundle
from ortpipe.runtime.check import (choose_cuda_variant, choose_variant, fallback_message, log,
                                   needs_check, refused_message, wants_fp16)
from ortpipe.runtime.errors import BundleError, InputError
from ortpipe.runtime.inference import use_shared_threads
from ortpipe.runtime.load_options import LoadOptions
from ortpipe.runtime.machine import describe_machine, isa_summary

if TYPE_CHECKING:
    from ortpipe.runtime.classifier import TextClassifier


def load_classifier(cls, path, asked: LoadOptions) -> "TextClassifier":
    """``cls`` loaded from the bundle at ``path`` as ``asked``; the chosen variant checked here."""
    if asked.workload is not None:
        return _load_fastest(cls, path, asked)
    backend = check_backend(asked.backend)
    bundle = open_bundle(path, asked.variant or _backend_default(path, backend, asked.verify), asked.verify)
    threads = asked.threads
    if asked.shared_threads:
        use_shared_threads(threads)
        threads = None
    options = {"provider": asked.provider, "threads": threads, "spinning": asked.spinning, "memory": asked.memory,
               "shared_threads": asked.shared_threads, "backend": backend}
    if asked.variant is None and backend == "onnxruntime" and wants_fp16(bundle.manifest, asked.provider):
        on_cuda = _load_on_cuda(cls, bundle, asked.verify, options)
        if on_cuda is not None:
            return on_cuda
    clf = cls(bundle, **options)
    if asked.variant is not None or (bundle.probes_path is None and not needs_check(bundle)):
        return clf
    return _checked(cls, clf, bundle, asked.verify, options)


def _backend_default(path, backend: str, verify: bool) -> str | None:
    """The variant a backend runs when none is asked for: OpenVINO's is ``static-int8`` (else fp32)."""
    if backend != "openvino":
        return None
    manifest = open_bundle(path, None, verify=False).manifest
    static = manifest.variants.get("static-int8")
    return "static-int8" if static is not None and static.validation.get("passed") else "fp32"


def _checked(cls, clf, bundle: Bundle, verify: bool, options: dict) -> "TextClassifier":
    """``clf`` once its variant passed its probes here; else the fallback float variant, or a refusal."""
    report = clf.check()  # float variants too: a replaced model file fails here (cached per machine)
    if options["backend"] == "openvino":
        fallback = bundle.variant.name if report.passed else ("fp32" if bundle.variant.name != "fp32" else None)
    else:
        fallback, _ = choose_variant(bundle.manifest, report)
    if fallback == bundle.variant.name:
        return clf
    if fallback is not None:
        log.warning(fallback_message(bundle, report, fallback, isa_summary(describe_machine())))
        clf = cls(bundle.with_variant(fallback, verify), **options)
        clf.rejected = report
        second = clf.check() if bundle.probes_path is not None else None
        if second is None or second.passed:
            return clf
        report = second
    raise BundleError(refused_message(bundle, report))


def _load_on_cuda(cls, bundle: Bundle, verify: bool, options: dict) -> "TextClassifier | None":
    """fp16 if CUDA really activates and it passes its probes there, else the best float variant on CUDA.

    None when ONNX Runtime did not activate CUDA (``provider="auto"``): the CPU choice applies.
    """
    fp16 = cls(bundle.with_variant("fp16", verify), **options)
    if fp16.provider != "cuda":
        return None
    report = fp16.check()
    chosen, why = choose_cuda_variant(bundle.manifest, report)
    if chosen == "fp16":
        return fp16
    log.warning(f"ortpipe: bundle {bundle.path}: {why}. Pass variant='fp16' to load it anyway.")
    clf = cls(bundle.with_variant(chosen, verify), **options)
    clf.rejected = report
    return clf


def _load_fastest(cls, path, asked: LoadOptions) -> "TextClassifier":
    """The variant and backend measured fastest here for ``asked.workload`` (measured once, then cached)."""
    from ortpipe.runtime.fastest import choose_fastest

    if asked.variant is not None or asked.backend is not None:
        raise InputError("workload= lets load() choose the variant and the backend by measurement: leave "
                         "variant and backend unset, or drop workload")
    choice = choose_fastest(path, asked.workload, threads=asked.threads, memory=asked.memory)
    clf = load_classifier(cls, path, asked.but(variant=choice.chosen.variant, backend=choice.chosen.backend,
                                               workload=None))
    clf.choice = choice
    return clf

