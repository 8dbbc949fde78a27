"""Ways to change a copy of a bundle, for tests that break one on purpose."""

from __future__ import annotations

import json
from pathlib import Path

from ortpipe.runtime.manifest import sha256_of


def edit_manifest(bundle: Path, change) -> None:
    """Apply ``change`` to the bundle's parsed ``ortpipe.json`` and write it back."""
    path = bundle / "ortpipe.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_probes(bundle: Path, change) -> None:
    """Apply ``change`` to the parsed ``probes.json`` and record its new sha256, so only the content is wrong."""
    path = bundle / "probes.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    edit_manifest(bundle, lambda manifest: manifest.update(probes_sha256=sha256_of(path)))


def negate_reference_logits(probes: dict) -> None:
    """Every stored fp32 reference logit negated: no variant can agree with it."""
    probes["logits"] = [[-x for x in row] for row in probes["logits"]]


def negate_int8_outputs(probes: dict) -> None:
    """int8's export-time logits negated: int8 computes 'other numbers' here, the float variants still agree."""
    probes["outputs"]["int8"] = {size: [[-x for x in row] for row in rows]
                                 for size, rows in probes["outputs"]["int8"].items()}


def make_int8_the_default(bundle: Path) -> None:
    edit_manifest(bundle, lambda manifest: manifest.update(default_variant="int8"))
