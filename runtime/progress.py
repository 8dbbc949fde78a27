"""The resume record of ``classify --file … --out OUT``: the sidecar ``OUT.ortpipe-progress``, checked before trusted.

After each chunk it records the input rows done, the output's bytes and their sha256, a fingerprint of the
input (size, modification time, sha256 of its first MiB) and the options that shape the output. It is
written atomically (a temporary file, then ``os.replace``). On resume each is checked: an input that
changed, other options, or an output edited since is refused with what differs, never resumed wrongly.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ortpipe.runtime.errors import InputError

PROGRESS_SUFFIX = ".ortpipe-progress"
HEAD_BYTES = 1 << 20


def progress_file(out: Path) -> Path:
    return out.with_name(out.name + PROGRESS_SUFFIX)


def input_fingerprint(source: Path) -> dict:
    """What identifies the input a run read: its size, modification time and first MiB's sha256."""
    stat = source.stat()
    with open(source, "rb") as handle:
        head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": head}


def hash_prefix(path: Path, size: int):
    """A sha256 object fed the first ``size`` bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        left = size
        while left > 0:
            block = handle.read(min(left, 1 << 20))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest


class Progress:
    """The sidecar of ``out`` for one run: ``options`` and the input's fingerprint are what a resume must match."""

    def __init__(self, out: Path, source: Path, options: dict):
        self.out, self.path = out, progress_file(out)
        self.expected = {"input": input_fingerprint(source), "options": options}

    def begin(self, resume: bool) -> tuple[int, int, object]:
        """(rows done, output bytes, their running sha256): from the checked record with ``resume``, else none."""
        return self.resume_point() if resume else (0, 0, hashlib.sha256())

    def resume_point(self) -> tuple[int, int, object]:
        """(rows done, output bytes, sha256 of those bytes) after checking everything; the output is cut back."""
        if not self.out.exists() or not self.path.exists():
            return 0, 0, hashlib.sha256()
        done = self._read()
        rows, size = done["rows"], done["bytes"]
        for key, what in (("input", "the input file changed (size, modification time or first MiB)"),
                          ("options", "the options differ")):
            if done.get(key) != self.expected[key]:
                raise InputError(f"cannot resume into {self.out}: {what} since the interrupted run "
                                 f"({_differences(done.get(key), self.expected[key])}); run again with the same "
                                 f"input and options, or delete {self.out} and {self.path} to start over")
        if self.out.stat().st_size < size:
            raise InputError(f"cannot resume: {self.out} is shorter than its progress record says; delete both "
                             "to start over")
        digest = hash_prefix(self.out, size)
        if digest.hexdigest() != done.get("sha256"):
            raise InputError(f"cannot resume: the first {size} bytes of {self.out} are not what this run wrote "
                             f"(edited since?); delete {self.out} and {self.path} to start over")
        with open(self.out, "r+b") as handle:
            handle.truncate(size)
        return rows, size, digest

    def save(self, rows: int, size: int, sha256: str) -> None:
        """Record a finished chunk, atomically."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps({"rows": rows, "bytes": size, "sha256": sha256, **self.expected}))
        os.replace(temporary, self.path)

    def remove(self) -> None:
        if self.path.exists():
            self.path.unlink()

    def _read(self) -> dict:
        try:
            done = json.loads(self.path.read_text())
            done["rows"], done["bytes"] = int(done["rows"]), int(done["bytes"])
            return done
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot resume: {self.path} is unreadable ({exc}); delete it and {self.out} to "
                             "start over") from exc


def _differences(recorded, expected) -> str:
    if not isinstance(recorded, dict):
        return "no record of them"
    keys = sorted(k for k in set(recorded) | set(expected) if recorded.get(k) != expected.get(k))
    return ", ".join(f"{k}: {recorded.get(k)!r} then, {expected.get(k)!r} now" for k in keys[:4])
