"""The bundle manifest ``ortpipe.json``: the contract between export and runtime.

Written by :mod:`ortpipe.export.bundle`, read here. Kept free of torch so the
runtime can parse it; every field the runtime relies on is checked on read,
and a malformed manifest is a :class:`BundleError` that names the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ortpipe.runtime.errors import BundleError
from ortpipe.runtime.windows import MIN_WINDOW

MANIFEST_NAME = "ortpipe.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 bundles carry no probes and no machine records
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


@dataclass(frozen=True)
class Variant:
    """One ONNX file of the bundle and what was measured on it at export."""

    name: str
    file: str
    sha256: str
    validation: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)  # where it was validated and timed
    calibration: dict[str, Any] = field(default_factory=dict)  # see :mod:`.calibration` (empty: none)

    @property
    def quantized(self) -> bool:
        """Whether its numbers depend on the CPU's integer kernels (int8)."""
        return self.details.get("method") in ("dynamic", "static")


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to know about a bundle."""

    source_model: str
    model_type: str
    problem_type: str
    id2label: dict[int, str]
    max_length: int
    input_names: tuple[str, ...]
    opset: int
    default_variant: str
    variants: dict[str, Variant]
    pad_token_id: int = 0
    tokenizer_file: str = "tokenizer.json"
    tokenizer_sha256: str = ""
    probes_file: str = ""
    probes_sha256: str = ""
    architecture: dict[str, int] = field(default_factory=dict)
    task: str = "text-classification"
    format_version: int = FORMAT_VERSION
    library_versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # the recommended window for long texts (tokens per window, ``window="auto"``); None: the model's limit
    window: int | None = None
    # an NLI model's entailment label (its index in id2label), for zero-shot classification; None: none
    entailment_id: int | None = None

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def labels(self) -> list[str]:
        """Label names in logit order."""
        return [self.id2label[i] for i in range(self.num_labels)]

    def to_json(self) -> str:
        data = asdict(self)
        data["id2label"] = {str(k): v for k, v in self.id2label.items()}
        data["input_names"] = list(self.input_names)
        data["notes"] = list(self.notes)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    def write(self, bundle_dir: Path) -> Path:
        path = Path(bundle_dir) / MANIFEST_NAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def _require(data: dict, key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    if key not in data:
        raise BundleError(f"{where}: manifest field {key!r} is missing")
    value = data[key]
    if not isinstance(value, kind):
        raise BundleError(f"{where}: manifest field {key!r} should be {_kind_name(kind)}, "
                          f"got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def plain_file_name(bundle_dir: str | Path, name: Any, what: str) -> str:
    """``name`` if it names a file directly inside ``bundle_dir``; else a :class:`BundleError` naming it.

    A manifest is untrusted input (bundles are copied, shipped to Ray nodes, loaded over HTTP): every file
    it names must be a plain name — no path separator, no ``..``, not absolute, not a symlink leading out.
    """
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or Path(name).is_absolute()):
        raise BundleError(f"{Path(bundle_dir) / MANIFEST_NAME}: {what} {name!r} must be a plain file name inside "
                          "the bundle folder (no path separator, no '..')")
    path = Path(bundle_dir) / name
    if path.is_symlink():
        root, target = Path(bundle_dir).resolve(), path.resolve()
        if root not in target.parents:
            raise BundleError(f"{path}: {what} {name!r} is a symlink to {target}, outside the bundle folder")
    return name


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())


def _labels(data: dict, path: Path) -> dict[int, str]:
    raw_labels = _require(data, "id2label", dict, path)
    try:
        id2label = {int(k): str(v) for k, v in raw_labels.items()}
    except ValueError as exc:
        raise BundleError(f"{path}: id2label keys must be integers") from exc
    if sorted(id2label) != list(range(len(id2label))) or not id2label:
        raise BundleError(f"{path}: id2label must map 0..N-1 to names, got keys {sorted(id2label)}")
    return id2label


def _variants(data: dict, bundle_dir, path: Path) -> dict[str, Variant]:
    variants = {}
    for name, raw in _require(data, "variants", dict, path).items():
        if not isinstance(raw, dict) or not {"file", "sha256"} <= raw.keys():
            raise BundleError(f"{path}: variant {name!r} needs 'file' and 'sha256'")
        plain_file_name(bundle_dir, raw["file"], f"variant {name!r} file")
        if not _is_sha256(raw["sha256"]):
            raise BundleError(f"{path}: variant {name!r} has sha256 {str(raw['sha256'])[:80]!r}, not 64 hex digits: "
                              "a bundle's files are always hash-checked, so an empty or malformed hash is refused")
        variants[name] = Variant(name=name, file=raw["file"], sha256=raw["sha256"],
                                 validation=raw.get("validation", {}), details=raw.get("details", {}),
                                 machine=raw.get("machine", {}), calibration=raw.get("calibration") or {})
    if not variants:
        raise BundleError(f"{path}: the manifest lists no model variants")
    return variants


def _window(data: dict, max_length: int, path: Path) -> int | None:
    window = data.get("window")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool)
                               or not MIN_WINDOW <= window <= max_length):
        raise BundleError(f"{path}: window {window!r} must be an int from {MIN_WINDOW} to max_length "
                          f"({max_length}) tokens")
    return window


def _entailment(data: dict, num_labels: int, path: Path) -> int | None:
    found = data.get("entailment_id")
    if found is not None and (not isinstance(found, int) or isinstance(found, bool) or not 0 <= found < num_labels):
        raise BundleError(f"{path}: entailment_id {found!r} must be the index of one of the {num_labels} labels")
    return found


def _json_object(path: Path, bundle_dir: str | Path) -> dict:
    if not path.is_file():
        raise BundleError(f"{path} not found: {bundle_dir} is not an ortpipe bundle "
                          "(create one with `ortpipe export`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return data


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Parse and check ``bundle_dir/ortpipe.json``.

    Raises:
        BundleError: the file is missing, not JSON, of another format version,
            or a field is missing or of the wrong type.
    """
    path = Path(bundle_dir) / MANIFEST_NAME
    data = _json_object(path, bundle_dir)
    version = _require(data, "format_version", int, path)
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{path}: format version {version} is not supported by this ortpipe "
                          f"(it reads versions {list(READABLE_VERSIONS)}); re-export the bundle")
    problem_type = _require(data, "problem_type", str, path)
    if problem_type not in PROBLEM_TYPES:
        raise BundleError(f"{path}: problem_type {problem_type!r} is not one of {PROBLEM_TYPES}")
    id2label = _labels(data, path)
    variants = _variants(data, bundle_dir, path)
    default_variant = _require(data, "default_variant", str, path)
    if default_variant not in variants:
        raise BundleError(f"{path}: default_variant {default_variant!r} is not among the variants "
                          f"{sorted(variants)}")
    max_length = _require(data, "max_length", int, path)
    if max_length < 2:
        raise BundleError(f"{path}: max_length {max_length} is too small")
    tokenizer_file = plain_file_name(bundle_dir, data.get("tokenizer_file", "tokenizer.json"), "tokenizer_file")
    probes_file = data.get("probes_file", "")
    if probes_file:
        plain_file_name(bundle_dir, probes_file, "probes_file")
    window = _window(data, max_length, path)
    return Manifest(
        source_model=_require(data, "source_model", str, path),
        model_type=_require(data, "model_type", str, path),
        problem_type=problem_type,
        id2label=id2label,
        max_length=max_length,
        input_names=tuple(_require(data, "input_names", list, path)),
        opset=_require(data, "opset", int, path),
        default_variant=default_variant,
        variants=variants,
        pad_token_id=_require(data, "pad_token_id", int, path),
        tokenizer_file=tokenizer_file,
        tokenizer_sha256=data.get("tokenizer_sha256", ""),
        probes_file=probes_file,
        probes_sha256=data.get("probes_sha256", ""),
        architecture=data.get("architecture", {}),
        task=data.get("task", "text-classification"),
        format_version=version,
        library_versions=data.get("library_versions", {}),
        notes=tuple(data.get("notes", ())),
        window=window,
        entailment_id=_entailment(data, len(id2label), path),
    )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
