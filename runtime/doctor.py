"""``ortpipe doctor``: this machine, and how each variant of a bundle fares on it.

    ortpipe doctor                         # the default bundle
    ortpipe doctor --bundle B --json       # one JSON object: machine, variants, chosen

For every variant: its probe check run here (agreement with the stored fp32
logits, max |Δlogit|, drift from its export-time logits), its single-sentence
latency here, its node placement (on CUDA: the ops left on the CPU), the
memory setting in force, and the variant ``TextClassifier.load`` would
choose, with why.
"""

from __future__ import annotations

from pathlib import Path

from ortpipe.runtime.bundle import default_bundle_dir, open_bundle
from ortpipe.runtime.check import choose_cuda_variant, choose_variant, export_gate_summary
from ortpipe.runtime.classifier import TextClassifier
from ortpipe.runtime.errors import BundleError
from ortpipe.runtime.machine import describe_machine, isa_summary
from ortpipe.runtime.manifest import MANIFEST_NAME, read_manifest
from ortpipe.runtime.timing import median_ms

LATENCY_TEXT = "This course is amazing!"


def single_sentence_ms(clf: TextClassifier, repeats: int = 30) -> float:
    """Median end-to-end time of ``clf(LATENCY_TEXT)`` in ms, after a warm-up."""
    return median_ms(lambda: clf(LATENCY_TEXT), repeats, warmup=3)


def _open_any_variant(bundle_path: str | Path | None):
    """The bundle with its default variant, or with the first variant whose file is there when that one is not."""
    try:
        return open_bundle(bundle_path)
    except BundleError as missing:
        path = Path(bundle_path) if bundle_path is not None else default_bundle_dir()
        if not (path / MANIFEST_NAME).is_file():
            raise
        manifest = read_manifest(path)
        for name, variant in manifest.variants.items():
            if (path / variant.file).is_file():
                return open_bundle(path, name)
        raise missing


def diagnose(bundle_path: str | Path | None = None, provider: str = "auto", threads: int | None = None,
             memory: str | None = None) -> dict:
    """Check every variant of a bundle here; returns ``{machine, bundle, memory, variants, chosen, why}``."""
    machine = describe_machine(cuda=True)
    default = _open_any_variant(bundle_path)
    manifest = default.manifest
    variants, default_report, reports, on_cuda, memory_in_force = {}, None, {}, False, None
    for name, variant in manifest.variants.items():
        try:
            clf = TextClassifier(default.with_variant(name), provider=provider, threads=threads, memory=memory)
        except BundleError as exc:  # a variant file left out (as on the GPU machine) is one row, not the end
            variants[name] = {"passed": False, "reason": str(exc), "quantized": variant.quantized,
                              "probe_agreement": None, "max_abs_diff": None, "drift": None, "single_ms": None,
                              "export_single_ms": None, "validated_on": None, "placement": {}, "provider": None}
            continue
        report = reports[name] = clf.check(refresh=True)
        memory_in_force = clf.memory.as_dict()
        on_cuda = on_cuda or clf.provider == "cuda"
        if name == manifest.default_variant:
            default_report = report
        exported = variant.machine
        variants[name] = {
            "probe_agreement": report.agreement, "max_abs_diff": report.max_abs_diff, "drift": report.drift,
            "single_ms": single_sentence_ms(clf), "passed": report.passed, "reason": report.reason,
            "quantized": variant.quantized, "provider": clf.provider, "probe_ms": report.probe_ms,
            "export_single_ms": variant.details.get("timing_cpu", {}).get("single_sentence_ms"),
            "validated_on": isa_summary(exported) if exported else None,
            "placement": clf.model.placement(), "export_gate": export_gate_summary(variant.validation),
            "calibration": clf.calibration.summary() if clf.calibration is not None else None,
        }
    unloadable = variants[manifest.default_variant]["provider"] is None
    if on_cuda and "fp16" in reports:
        chosen, why = choose_cuda_variant(manifest, reports["fp16"])
    elif unloadable:
        reason = variants[manifest.default_variant]["reason"]
        chosen, why = None, f"nothing: load() without a variant fails here ({reason})"
    else:
        chosen, why = choose_variant(manifest, default_report)
        if chosen is not None and chosen in reports and not reports[chosen].passed:
            chosen, why = None, f"nothing: {why}, but {chosen!r} failed its probe check too ({reports[chosen].reason})"
    return {"machine": machine, "bundle": str(default.path), "memory": memory_in_force,
            "format_version": manifest.format_version, "max_length": manifest.max_length,
            "window": manifest.window, "default_variant": manifest.default_variant, "variants": variants, "chosen": chosen, "why": why,
            "fastest": None if on_cuda else fastest_here(default.path, threads, memory)}


def fastest_here(bundle_path: Path, threads: int | None, memory: str | None) -> dict:
    """Every variant on every installed backend timed here (afresh), and what ``load(workload=...)`` picks."""
    from dataclasses import asdict

    from ortpipe.runtime.fastest import WORKLOADS, choose_fastest, pick

    try:  # one measurement; each workload ranks its timings
        timings = choose_fastest(bundle_path, WORKLOADS[0], threads=threads, memory=memory, refresh=True).timings
        choices = {w: pick(timings, w) for w in WORKLOADS}
    except BundleError as exc:
        return {"error": str(exc)}
    return {"timings": [asdict(t) for t in timings],
            **{w: {"variant": c.chosen.variant, "backend": c.chosen.backend, "why": c.why} for w, c in choices.items()}}


def fastest_lines(fastest: dict | None) -> list[str]:
    """What ``load(workload=...)`` picks here, one line per workload."""
    if not fastest:
        return []
    if "error" in fastest:
        return ["", f"load(workload=...) fails here: {fastest['error']}"]
    return [""] + [f"load(workload={w!r}) picks {fastest[w]['variant']!r} on {fastest[w]['backend']}: "
                   f"{fastest[w]['why']}" for w in ("single", "bulk")]


def off_device_ops(placement: dict, provider: str) -> str:
    """For a CUDA session, the ops ONNX Runtime left on the CPU (each costs copies), e.g. ``"Shape ×2, Gather"``."""
    if provider != "cuda":
        return ""
    on_cpu = placement.get("CPUExecutionProvider", {})
    return ", ".join(f"{op} ×{n}" if n > 1 else op for op, n in sorted(on_cpu.items()))


def _window_line(report: dict) -> str:
    limit = f"the model reads {report['max_length']} tokens at most"
    if report.get("window"):
        return f"{limit}; recommended window {report['window']} tokens (window='auto', --window auto)"
    return f"{limit}; no recommended window (window='auto' uses {report['max_length']})"


def calibration_line(summary: dict | None) -> str:
    """One line on a variant's calibration: temperature, ECE and log-loss before → after, its threshold."""
    if not summary:
        return "calibration: none (raw scores; `ortpipe calibrate BUNDLE --data FILE` fits one)"
    line = (f"calibration: T={summary['temperature']} on {summary['data']}; on {summary['rows']} "
            f"{summary['measured_on']}: ECE {summary['ece_before']} → {summary['ece_after']}, log-loss "
            f"{summary['log_loss_before']} → {summary['log_loss_after']}")
    if summary["threshold"] is not None:
        line += (f"; threshold='auto' {summary['threshold']:.4f} for precision {summary['target_precision']} "
                 f"(held out: coverage {summary['threshold_coverage']}, precision {summary['threshold_precision']})")
    return line


def format_report(report: dict) -> str:
    """The diagnosis as a few aligned lines for a terminal."""
    machine = report["machine"]
    saturates = machine.get("int8_u8s8_saturates")
    kernel = {True: "u8×s8 sums saturate (no VNNI): 8-bit int8 weights compute differently here",
              False: "u8×s8 sums are exact", None: "not probed"}[saturates]
    lines = [
        f"machine      {isa_summary(machine)}",
        f"cores        {machine['cores']} ({machine['system']})",
        f"int8 kernel  {kernel}",
        f"onnxruntime  {machine['onnxruntime']}, providers: {', '.join(machine['providers'])}",
        f"cuda device  {machine.get('cuda_device') or 'none'}",
        f"memory       {(report['memory'] or {}).get('description', 'no variant could be loaded')}",
        f"bundle       {report['bundle']} (format {report['format_version']}, default {report['default_variant']!r})",
        f"long texts   {_window_line(report)}",
    ]
    places = {v["validated_on"] or "not recorded (older bundle)" for v in report["variants"].values()}
    one_place = len(places) == 1
    if one_place:
        lines.append(f"validated on {places.pop()}")
    lines += ["", f"{'variant':<10} {'passed':<6} {'agreement':>9} {'max |Δ|':>8} {'drift':>8} {'single ms':>9} "
                  f"{'at export':>9}" + ("" if one_place else "  validated on")]
    for name, v in report["variants"].items():
        def num(value, spec):
            return "—" if value is None else format(value, spec)

        lines.append(f"{name:<10} {'yes' if v['passed'] else 'NO':<6} {num(v['probe_agreement'], '.2%'):>9} "
                     f"{num(v['max_abs_diff'], '.3g'):>8} {num(v['drift'], '.2g'):>8} {num(v['single_ms'], '.3f'):>9} "
                     f"{num(v['export_single_ms'], '.3f'):>9}"
                     + ("" if one_place else f"  {v['validated_on'] or 'not recorded'}"))
        if not v["passed"]:
            lines.append(f"{'':<10} why: {v['reason']}")
        if v.get("export_gate"):  # the export's own gate, beside this machine's probe check above
            lines.append(f"{'':<10} {v['export_gate']}")
        off_device = off_device_ops(v["placement"], v["provider"] or "")
        if off_device:
            lines.append(f"{'':<10} on the CPU, not CUDA: {off_device}")
        lines.append(f"{'':<10} {calibration_line(v.get('calibration'))}")
    picks = f"{report['chosen']!r}: " if report["chosen"] else ""
    lines += ["", f"load() picks {picks}{report['why']}"] + fastest_lines(report.get("fastest"))
    return "\n".join(lines)
