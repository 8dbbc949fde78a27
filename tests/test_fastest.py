"""The measured choice of variant and backend (runtime/fastest.py), with the measurement injected:
the choice must not depend on the CPU the tests run on."""

import pytest

from ortpipe.runtime import TextClassifier
from ortpipe.runtime.errors import BundleError, InputError
from ortpipe.runtime.fastest import Timing, candidates, choose_fastest
from ortpipe.runtime.bundle import open_bundle

SPEEDS = {("int8", "onnxruntime"): (0.7, 450.0, 1), ("optimized", "onnxruntime"): (2.0, 330.0, 32),
          ("fp32", "onnxruntime"): (2.3, 300.0, 32), ("static-int8", "onnxruntime"): (9.0, 440.0, 32),
          ("fp32", "openvino"): (2.5, 290.0, 32), ("optimized", "openvino"): (2.4, 295.0, 32),
          ("static-int8", "openvino"): (1.1, 860.0, 32)}


def fake(failing=()):
    calls = []

    def measure(path, variant, backend, threads, memory):
        calls.append((variant, backend))
        if (variant, backend) in failing:
            return Timing(variant, backend, False, reason="disagrees with fp32")
        single, bulk, batch = SPEEDS[(variant, backend)]
        return Timing(variant, backend, True, single, bulk, batch, "agrees")
    measure.calls = calls
    return measure


BOTH = ("onnxruntime", "openvino")


def test_every_variant_a_backend_can_run_is_a_candidate(static_bundle):
    pairs = candidates(open_bundle(static_bundle), BOTH)
    assert set(pairs) == set(SPEEDS)  # fp16 is a CUDA variant; OpenVINO cannot run dynamic int8


def test_bulk_and_single_pick_the_fastest_that_passed(static_bundle):
    bulk = choose_fastest(static_bundle, "bulk", backends=BOTH, measure=fake())
    assert (bulk.chosen.variant, bulk.chosen.backend) == ("static-int8", "openvino")
    assert "fastest here for bulk: 'static-int8' on openvino: 860 texts/s at batch 32" in bulk.why
    single = choose_fastest(static_bundle, "single", backends=BOTH, measure=fake())
    assert (single.chosen.variant, single.chosen.backend) == ("int8", "onnxruntime")


def test_a_candidate_that_fails_its_probe_check_is_never_chosen(static_bundle):
    choice = choose_fastest(static_bundle, "bulk", backends=BOTH, measure=fake(failing={("static-int8", "openvino")}))
    assert (choice.chosen.variant, choice.chosen.backend) == ("int8", "onnxruntime")
    assert "failed their probe check here: 'static-int8' on openvino" in choice.why


def test_the_timings_are_measured_once_per_machine_then_cached(static_bundle):
    first = fake()
    choose_fastest(static_bundle, "bulk", backends=BOTH, measure=first)
    again = fake()
    choice = choose_fastest(static_bundle, "single", backends=BOTH, measure=again)
    assert len(first.calls) == len(SPEEDS) and again.calls == [] and choice.cached
    assert "(measured earlier on this machine)" in choice.why
    refreshed = fake()
    choose_fastest(static_bundle, "single", backends=BOTH, measure=refreshed, refresh=True)
    assert len(refreshed.calls) == len(SPEEDS)


def test_nothing_passed_is_a_clear_error(static_bundle):
    with pytest.raises(BundleError, match="no variant passed its probe check here"):
        choose_fastest(static_bundle, "bulk", backends=BOTH, measure=fake(failing=set(SPEEDS)))


def test_bad_workloads_are_refused(static_bundle):
    with pytest.raises(InputError, match="workload must be one of single, bulk"):
        choose_fastest(static_bundle, "batch", measure=fake())
    with pytest.raises(InputError, match="leave variant and backend unset"):
        TextClassifier.load(static_bundle, workload="bulk", variant="int8")


def test_load_with_a_workload_runs_what_was_measured_fastest(static_bundle):
    clf = TextClassifier.load(static_bundle, workload="bulk", threads=1)
    chosen = clf.choice.chosen
    assert (clf.variant, clf.backend) == (chosen.variant, chosen.backend) and chosen.passed
    assert chosen.bulk_per_s == max(t.bulk_per_s for t in clf.choice.timings if t.passed)
    assert clf(["This course is amazing!"])[0]["label"] in clf.labels
