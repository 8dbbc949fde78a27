"""Open a bundle directory: read its manifest, check its files, pick a variant."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ortpipe.runtime.errors import BundleError, IntegrityError
from ortpipe.runtime.manifest import MANIFEST_NAME, Manifest, Variant, read_manifest, sha256_of

DEFAULT_BUNDLE_NAME = "sst2-minilm"


def ortpipe_home() -> Path:
    """ortpipe's data folder: ``$ORTPIPE_HOME``, else ``~/.cache/ortpipe``."""
    env = os.environ.get("ORTPIPE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ortpipe"


def default_bundle_dir() -> Path:
    """Where ``ortpipe export`` with no model writes the default bundle."""
    return ortpipe_home() / "bundles" / DEFAULT_BUNDLE_NAME


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its folder, manifest and the chosen variant.

    ``manifest_sha256`` identifies the bundle (the manifest lists every file's hash).
    """

    path: Path
    manifest: Manifest
    variant: Variant
    manifest_sha256: str = ""

    @property
    def model_path(self) -> Path:
        return self.path / self.variant.file

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.manifest.tokenizer_file

    @property
    def probes_path(self) -> Path | None:
        """The probe texts with their fp32 reference logits; None for bundles without them."""
        return self.path / self.manifest.probes_file if self.manifest.probes_file else None

    def with_variant(self, name: str, verify: bool = True) -> "Bundle":
        """The same bundle with another of its variants chosen (its file checked)."""
        return open_bundle(self.path, name, verify)


def _check_file(path: Path, expected_sha256: str, what: str, verify: bool) -> None:
    if not path.is_file():
        raise BundleError(f"{what} {path.name} is missing from bundle {path.parent}")
    if path.stat().st_size == 0:
        raise BundleError(f"{what} {path} is empty")
    if verify and expected_sha256:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise IntegrityError(f"{what} {path} is corrupted or was changed: sha256 {actual[:16]}… "
                                 f"but the manifest records {expected_sha256[:16]}…")


def open_bundle(path: str | Path | None = None, variant: str | None = None, verify: bool = True) -> Bundle:
    """Read and check a bundle.

    Args:
        path: the bundle folder; None means the default bundle.
        variant: a variant named in the manifest (``fp32``, ``optimized``,
            ``int8``, ``fp16``); None means the manifest's default.
        verify: check sha256 of the model and tokenizer files (a few ms per MB).

    Raises:
        BundleError: the folder, manifest or a file is missing, or the variant is unknown.
        IntegrityError: a file's sha256 differs from the manifest.
    """
    if path is None:
        path = default_bundle_dir()
        if not path.is_dir():
            raise BundleError(f"the default bundle is not built yet (looked in {path}). Two ways out: run "
                              "`ortpipe export` once to build it here (it needs the export extra: `pip install "
                              "torch==2.13.0` first, the CPU build, then `pip install 'ortpipe[export]'`), or "
                              "copy a bundle folder built on another machine and pass its path (`ortpipe doctor "
                              "--bundle PATH` checks its hashes and this CPU)")
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle folder {path} does not exist")
    manifest = read_manifest(path)
    name = variant or manifest.default_variant
    if name not in manifest.variants:
        raise BundleError(f"bundle {path} has no variant {name!r}; it has {sorted(manifest.variants)}")
    chosen = manifest.variants[name]
    _check_file(path / chosen.file, chosen.sha256, f"model variant {name!r}:", verify)
    _check_file(path / manifest.tokenizer_file, manifest.tokenizer_sha256, "tokenizer", verify)
    if manifest.probes_file:
        _check_file(path / manifest.probes_file, manifest.probes_sha256, "probe file", verify)
    return Bundle(path=path, manifest=manifest, variant=chosen, manifest_sha256=sha256_of(path / MANIFEST_NAME))
