"""Ship a bundle to Ray nodes through the object store; each node checks it before loading.

A cluster's nodes need not share a disk: the driver puts the bundle's files
in Ray's object store (:func:`ship_bundle`), and each actor writes them to
``$ORTPIPE_HOME/shipped/<bundle id>/`` on its own node (:func:`materialize`),
checking every file against the sha256 taken on the driver. Actors on one
node share that copy; a file already there with the right hash is not fetched.

Only what the node may load travels: the manifest, tokenizer and probe
texts, the variant asked for, or the manifest's default plus the float
variant ``load()`` falls back to when a quantized default fails its probe
check on that node's CPU.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ortpipe.runtime.bundle import open_bundle, ortpipe_home
from ortpipe.runtime.check import best_float_variant
from ortpipe.runtime.errors import IntegrityError
from ortpipe.runtime.manifest import MANIFEST_NAME, plain_file_name, sha256_of


@dataclass(frozen=True)
class ShippedFile:
    """One bundle file in the object store: its name, its sha256, and ``[ObjectRef]``.

    The reference is kept in a list so that Ray passes it on as a reference
    instead of resolving it when this object is an actor's argument.
    """

    name: str
    sha256: str
    size: int
    ref: list


@dataclass(frozen=True)
class ShippedBundle:
    """A bundle put in the object store by :func:`ship_bundle`; ``key`` is its manifest's sha256."""

    key: str
    variant: str | None
    files: tuple[ShippedFile, ...]
    name: str = ""  # the bundle folder's name where it was shipped from (what the server calls the model)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def files_to_ship(path: Path, variant: str | None) -> list[str]:
    """The names of the files a node needs to load ``variant`` (None: the default, or its fallback)."""
    bundle = open_bundle(path, variant, verify=False)  # the caller checks what it ships
    manifest = bundle.manifest
    names = [MANIFEST_NAME, manifest.tokenizer_file, *([manifest.probes_file] if manifest.probes_file else [])]
    variants = [bundle.variant.name]
    if variant is None and bundle.variant.quantized:
        variants.append(best_float_variant(manifest))
    names += [manifest.variants[name].file for name in dict.fromkeys(variants) if name in manifest.variants]
    return names


def ship_bundle(path: str | Path | None = None, variant: str | None = None) -> ShippedBundle:
    """Check the bundle here and put the files a node needs into Ray's object store (Ray must be initialised)."""
    import ray

    bundle = open_bundle(path, variant, verify=True)
    files = []
    for name in files_to_ship(bundle.path, variant):
        data = (bundle.path / name).read_bytes()
        files.append(ShippedFile(name, hashlib.sha256(data).hexdigest(), len(data), [ray.put(data)]))
    return ShippedBundle(bundle.manifest_sha256, variant, tuple(files), bundle.path.name)


def materialize(shipped: ShippedBundle, home: Path | None = None) -> Path:
    """The bundle folder on this node, fetched from the object store where missing; every file's sha256 checked.

    Raises:
        IntegrityError: a fetched file's sha256 differs from the one taken on the driver.
    """
    import ray

    folder = (home or ortpipe_home()) / "shipped" / shipped.key[:16]
    folder.mkdir(parents=True, exist_ok=True)
    for item in shipped.files:
        target = folder / plain_file_name(folder, item.name, "shipped file")
        if target.is_file() and sha256_of(target) == item.sha256:
            continue
        data = ray.get(item.ref[0])
        actual = hashlib.sha256(data).hexdigest()
        if actual != item.sha256:
            raise IntegrityError(f"shipped bundle file {item.name} arrived corrupted on this node: sha256 "
                                 f"{actual[:16]}… but the driver sent {item.sha256[:16]}…")
        _write_atomically(target, data)
    return folder


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target`` and rename it, so no actor reads half a file."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
