"""``ortpipe doctor``: the machine and each variant's probe check, as text and as JSON."""

from __future__ import annotations

import json
import re

from bundle_edits import edit_probes, make_int8_the_default, negate_int8_outputs, negate_reference_logits
from ortpipe.cli import main


def _doctor(capsys, *argv) -> tuple[int, str]:
    code = main(["doctor", *argv])
    return code, capsys.readouterr().out


def test_json_has_the_machine_every_variant_and_the_choice(bert_bundle, capsys):
    code, out = _doctor(capsys, "--bundle", str(bert_bundle), "--json")
    report = json.loads(out)
    assert code == 0
    assert isinstance(report["machine"]["isa"], list) and report["machine"]["cores"] >= 1
    assert set(report["variants"]) - {"static-int8"} == {"fp32", "optimized", "int8", "fp16"}
    for variant in report["variants"].values():
        assert {"probe_agreement", "max_abs_diff", "single_ms", "passed", "placement"} <= set(variant)
        assert variant["passed"] is True and variant["single_ms"] > 0
        assert set(variant["placement"]) == {"CPUExecutionProvider"}
    assert report["chosen"] == report["default_variant"]


def test_doctor_times_every_variant_on_every_backend_and_says_what_each_workload_gets(static_bundle, capsys):
    code, out = _doctor(capsys, "--bundle", str(static_bundle), "--json")
    fastest = json.loads(out)["fastest"]
    timed = {(t["variant"], t["backend"]): t for t in fastest["timings"]}
    assert ("static-int8", "openvino") in timed and ("int8", "onnxruntime") in timed
    bulk, single = fastest["bulk"], fastest["single"]
    best_bulk = max((t for t in timed.values() if t["passed"]), key=lambda t: t["bulk_per_s"])
    assert (bulk["variant"], bulk["backend"]) == (best_bulk["variant"], best_bulk["backend"])
    assert single["why"].startswith(f"fastest here for single: {single['variant']!r} on {single['backend']}")
    code, text = _doctor(capsys, "--bundle", str(static_bundle))  # measured afresh: the pick may differ
    assert re.search(r"^load\(workload='bulk'\) picks '[a-z0-9-]+' on (onnxruntime|openvino): fastest here", text, re.M)


def test_a_failing_default_is_reported_with_the_fallback(bundle_copy, capsys):
    make_int8_the_default(bundle_copy)
    edit_probes(bundle_copy, negate_int8_outputs)
    code, out = _doctor(capsys, "--bundle", str(bundle_copy), "--json")
    report = json.loads(out)
    assert code == 0 and report["variants"]["int8"]["passed"] is False
    assert report["chosen"] != "int8" and "failed its probe check" in report["why"]


def test_when_the_fallback_fails_too_doctor_chooses_nothing_and_exits_1(bundle_copy, capsys):
    """Issue 27, case 10 (before: 0 % agreement, that variant chosen anyway, exit 0)."""
    make_int8_the_default(bundle_copy)
    edit_probes(bundle_copy, negate_reference_logits)
    code, out = _doctor(capsys, "--bundle", str(bundle_copy), "--json")
    report = json.loads(out)
    assert code == 1 and report["chosen"] is None and "failed its probe check too" in report["why"]


def test_text_report_names_the_cpu_and_the_choice(bert_bundle, capsys):
    code, out = _doctor(capsys, "--bundle", str(bert_bundle))
    assert code == 0
    for needle in ("machine ", "int8 kernel", "onnxruntime", "validated on", "load() picks",
                   "memory       shrink ('lean')"):
        assert needle in out


def test_the_memory_setting_in_force_is_reported(bert_bundle, capsys):
    code, out = _doctor(capsys, "--bundle", str(bert_bundle), "--json", "--memory", "fast")
    memory = json.loads(out)["memory"]
    assert code == 0 and memory["setting"] == "arena" and memory["max_batch_tokens"] is None


def test_missing_bundle_is_one_line(tmp_path, capsys):
    code = main(["doctor", "--bundle", str(tmp_path / "nowhere")])
    assert code == 2 and "ortpipe: error: bundle folder" in capsys.readouterr().err


def test_a_variant_file_left_out_is_one_row_not_the_end(bundle_copy, capsys):
    (bundle_copy / "model.onnx").unlink()
    code, out = _doctor(capsys, "--bundle", str(bundle_copy), "--json")
    report = json.loads(out)
    assert code == 0 and report["variants"]["fp32"]["passed"] is False
    assert "missing" in report["variants"]["fp32"]["reason"] and report["variants"]["optimized"]["passed"]


def test_a_missing_default_file_means_load_picks_nothing(bundle_copy, capsys):
    manifest = json.loads((bundle_copy / "ortpipe.json").read_text())
    (bundle_copy / manifest["variants"][manifest["default_variant"]]["file"]).unlink()
    code, out = _doctor(capsys, "--bundle", str(bundle_copy))
    assert code == 1 and "load() picks nothing: load() without a variant fails here" in out


def test_a_bundle_shipped_with_only_its_int8_variant_loads_and_checks(bundle_copy, tmp_path, capsys):
    """Issue 30, item 4: build once, copy only what is served (int8, tokenizer, manifest, probes)."""
    import shutil

    make_int8_the_default(bundle_copy)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("ortpipe.json", "tokenizer.json", "probes.json", "model.int8.onnx"):
        shutil.copy(bundle_copy / name, shipped / name)
    from ortpipe.runtime import TextClassifier

    assert TextClassifier.load(shipped).variant == "int8"
    code, out = _doctor(capsys, "--bundle", str(shipped))
    assert code == 0 and "load() picks 'int8'" in out and "model.onnx is missing" in out
