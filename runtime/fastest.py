"""Which variant on which backend is fastest here, for one text per call or for many: measured, not assumed.

    choice = choose_fastest("bundles/my-model", "bulk")
    choice.chosen          # Timing(variant='static-int8', backend='openvino', bulk_per_s=861.0, ...)
    print(choice.why)

Every variant that passed its export validation, on every installed backend that can run its file,
is loaded, probe-checked on this machine (a variant that fails is not a candidate) and timed: the
median of a one-sentence call (``single``) and texts per second through ``clf(texts)`` at the
variant's default batch size (``bulk``; so dynamic int8, whose default is one text per call to keep
scores independent of batch neighbours, is timed as it would run). The timings are cached per
bundle, machine, engine versions and threads under ``$ORTPIPE_HOME/choices``: one measurement per
machine, a few seconds. A table of CPU names would go stale; a measurement does not.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ortpipe.runtime.backends import installed_backends, runs_on
from ortpipe.runtime.bundle import Bundle, open_bundle, ortpipe_home
from ortpipe.runtime.errors import BundleError, InputError
from ortpipe.runtime.machine import machine_key
from ortpipe.runtime.probes import ProbeSet
from ortpipe.runtime.timing import median_ms

WORKLOADS = ("single", "bulk")
BULK_TEXTS = 64
_FALLBACK_TEXTS = ("This course is amazing!", "I waited an hour and the food was cold.")


@dataclass(frozen=True)
class Timing:
    """One candidate measured here: a variant on a backend."""

    variant: str
    backend: str
    passed: bool  # its probe check here
    single_ms: float | None = None
    bulk_per_s: float | None = None
    batch_size: int | None = None  # its default batch size, at which bulk was timed
    reason: str = ""  # the probe check's verdict

    def score(self, workload: str) -> float:
        """Higher is faster: texts per second."""
        return 1000 / self.single_ms if workload == "single" else self.bulk_per_s

    def describe(self, workload: str) -> str:
        figure = (f"{self.single_ms:.2f} ms per sentence" if workload == "single"
                  else f"{self.bulk_per_s:.0f} texts/s at batch {self.batch_size}")
        return f"{self.variant!r} on {self.backend}: {figure}"


@dataclass(frozen=True)
class FastestChoice:
    """What was timed for a workload, what won, and why."""

    workload: str
    chosen: Timing
    timings: tuple[Timing, ...] = field(default_factory=tuple)
    cached: bool = False

    @property
    def why(self) -> str:
        others = sorted((t for t in self.timings if t.passed and t != self.chosen),
                        key=lambda t: -t.score(self.workload))
        failed = [t for t in self.timings if not t.passed]
        text = f"fastest here for {self.workload}: {self.chosen.describe(self.workload)}"
        if others:
            text += "; then " + ", ".join(t.describe(self.workload) for t in others)
        if failed:
            text += "; not candidates, having failed their probe check here: " + ", ".join(
                f"{t.variant!r} on {t.backend}" for t in failed)
        return text + (" (measured earlier on this machine)" if self.cached else "")


def candidates(bundle: Bundle, backends: tuple[str, ...]) -> list[tuple[str, str]]:
    """(variant, backend) pairs worth timing: CPU variants that passed their export gate, on each backend
    that runs their file."""
    names = [v.name for v in bundle.manifest.variants.values()
             if v.name != "fp16" and v.validation.get("passed", True)]
    return [(name, backend) for backend in backends for name in names if runs_on(backend, name)]


def measure(bundle_path: Path, variant: str, backend: str, threads: int | None, memory: str | None) -> Timing:
    """Load, probe-check and time one candidate here."""
    from ortpipe.runtime.classifier import TextClassifier

    clf = TextClassifier.load(bundle_path, variant=variant, backend=backend, threads=threads, memory=memory)
    report = clf.check()
    if not report.passed:
        return Timing(variant, backend, False, reason=report.reason)
    probes = ProbeSet.read(clf.bundle.probes_path).texts if clf.bundle.probes_path else _FALLBACK_TEXTS
    texts = (list(probes) * math.ceil(BULK_TEXTS / len(probes)))[:BULK_TEXTS]
    single = median_ms(lambda: clf(texts[0]), 30)
    bulk_ms = min(median_ms(lambda: clf(texts), 3) for _ in range(2))
    return Timing(variant, backend, True, round(single, 4), round(BULK_TEXTS / bulk_ms * 1000, 1),
                  clf.default_batch_size(), report.reason)


def choose_fastest(path, workload: str, threads: int | None = None, memory: str | None = None,
                   backends: tuple[str, ...] | None = None, refresh: bool = False,
                   measure: Callable[..., Timing] = measure) -> FastestChoice:
    """The fastest candidate here for ``workload`` (``"single"`` or ``"bulk"``), measured or from the cache.

    Args:
        backends: the backends to try (None: every installed one).
        refresh: measure again even when the cache has this machine's timings.
        measure: how one candidate is timed (tests pass their own).
    """
    if workload not in WORKLOADS:
        raise InputError(f"workload must be one of {', '.join(WORKLOADS)}, got {workload!r}")
    bundle = open_bundle(path, None, verify=True)
    backends = backends or installed_backends()
    wanted = candidates(bundle, backends)
    cache = _cache_file(bundle, backends, threads, memory)
    cached = None if refresh else _read(cache, wanted)
    timings = cached or tuple(measure(bundle.path, variant, backend, threads, memory) for variant, backend in wanted)
    if cached is None:
        _write(cache, timings)
    return pick(tuple(timings), workload, cached=cached is not None, bundle_path=bundle.path)


def pick(timings: tuple[Timing, ...], workload: str, cached: bool = False, bundle_path=None) -> FastestChoice:
    """The fastest of ``timings`` that passed, for ``workload`` (one measurement serves both workloads)."""
    passed = [t for t in timings if t.passed]
    if not passed:
        raise BundleError(f"bundle {bundle_path}: no variant passed its probe check here on "
                          f"{', '.join(dict.fromkeys(t.backend for t in timings))}; run `ortpipe doctor "
                          f"--bundle {bundle_path}`")
    return FastestChoice(workload, max(passed, key=lambda t: t.score(workload)), timings, cached=cached)


def _cache_file(bundle: Bundle, backends: tuple[str, ...], threads: int | None, memory: str | None) -> Path:
    versions = "-".join(_version(b) for b in backends)
    key = machine_key(provider=f"cpu {versions} threads={threads} memory={memory}")
    return ortpipe_home() / "choices" / f"{bundle.manifest_sha256[:16]}-{key}.json"


def _version(backend: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{backend}{version(backend)}"
    except PackageNotFoundError:
        return backend


def _read(path: Path, wanted: list[tuple[str, str]]) -> tuple[Timing, ...] | None:
    """The cached timings, if they cover exactly ``wanted``."""
    try:
        timings = tuple(Timing(**row) for row in json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return timings if [(t.variant, t.backend) for t in timings] == wanted else None


def _write(path: Path, timings: tuple[Timing, ...]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".choice-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump([asdict(t) for t in timings], out, indent=1)
        os.replace(temporary, path)
    except OSError:  # a cache that cannot be written: measured again next time
        pass
