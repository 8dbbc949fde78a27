"""The models a server holds, as one object: find, start, load beside, probe, switch, retire, unload, stop.

    served = ServedModels(predictors, default="sentiment", make=…, loader=…, model_roots=["/srv/bundles"])
    await served.load("topic", "/srv/bundles/topic-v2")   # loaded beside the old version, probed, switched to
    await served.unload("topic")                          # answers what it holds, then is freed

Built by :func:`~ortpipe.serve.app.create_app` and kept on ``app.state.served``; the routes and SIGHUP call
it. What it promises:

- **Every request ends.** A request is counted on the version it was routed to
  (:attr:`~ortpipe.serve.predictor.Predictor.inflight`) until it has its answer; an old version is stopped
  only once none are left and its queue is empty, and a stopped batcher answers 503 instead of holding a
  request forever.
- **One load per name at a time.** A second load or unload of a name that is loading is a 409 (SIGHUP
  waits its turn instead); loads run one at a time, so two versions at most are alive per model.
- **An unchanged bundle is not reloaded by SIGHUP** (same path, same manifest hash, same limits).
- **A bundle path is resolved, checked against ``--model-root`` and loaded under the lock**, then resolved
  again: a symlink swapped in meanwhile is refused instead of followed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

from ortpipe.runtime.errors import OrtpipeError
from ortpipe.runtime.memory import malloc_trim
from ortpipe.serve.errors import short
from ortpipe.serve.predictor import Predictor
from ortpipe.serve.protocol import RequestError, invalid
from ortpipe.serve.security import allowed_bundle

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer 'bundle' is refused before it touches the file system


def bundle_digest(path: str | Path) -> str:
    """sha256 of a bundle's manifest (it holds every file's hash): whether a bundle changed."""
    try:
        return hashlib.sha256((Path(path) / "ortpipe.json").read_bytes()).hexdigest()
    except OSError:
        return ""


class ServedModels:
    """The served models by name, and everything that changes them.

    Args:
        predictors: the models to start with, ``{name: Predictor}``.
        default: where ``/predict`` without a model goes.
        make: ``(name, clf, limits, bundle_path, digest) → Predictor`` for a version loaded at run time.
        loader: ``(path, name, old classifier or None) → TextClassifier``.
        model_roots: folders ``/load`` may read bundles from (a model's own path always).
        keys_set: whether the server has API keys (loading over HTTP needs them).
        can_load: False where the engine cannot load at run time (Ray Serve).
    """

    def __init__(self, predictors: dict[str, Predictor], default: str, make: Callable[..., Predictor],
                 loader: Callable, model_roots: Sequence[str] = (), keys_set: bool = False, can_load: bool = True):
        if default not in predictors:
            raise ValueError(f"--default-model {default!r} is not among the models {sorted(predictors)}")
        self.predictors, self.default = predictors, default
        self.draining = False
        self._make, self._loader = make, loader
        self._roots, self.keys_set, self._can_load = tuple(model_roots), keys_set, can_load
        self._own = {p.bundle_path for p in predictors.values()}
        self._lock = asyncio.Lock()  # one load at a time: at most two versions of a model alive
        self._busy: dict[str, asyncio.Lock] = {}  # a lock per name that is loading or unloading
        self._retiring: set[asyncio.Task] = set()

    def find(self, name: str | None) -> Predictor:
        """The model named ``name`` (None: the default); 404 naming the known ones."""
        if name is None:
            return self.predictors[self.default]
        if not isinstance(name, str):
            raise invalid(f"'model' must be a model's name, one of {sorted(self.predictors)}; got {short(name)}")
        if name not in self.predictors:
            raise RequestError(404, "not_found", f"no model {short(name)} here; the models are "
                                                 f"{sorted(self.predictors)}")
        return self.predictors[name]

    async def start(self) -> None:
        for predictor in self.predictors.values():
            await predictor.start()

    async def stop(self) -> None:
        """Wait for retiring versions, then stop every model."""
        if self._retiring:
            await asyncio.wait(set(self._retiring))
        for predictor in list(self.predictors.values()):
            await predictor.stop()

    async def load(self, name: str, bundle: str | None, trusted: bool = False, limits=None,
                   unless_unchanged: bool = False) -> dict:
        """Load ``bundle`` (None: the model's own path again) as ``name``, beside the old version, then switch.

        ``trusted``: from the operator (SIGHUP), not over HTTP; ``unless_unchanged``: keep a version whose
        path, manifest and limits are what would be loaded.
        """
        self._refuse_unless_allowed(trusted)
        old = self.predictors.get(name)
        if bundle is None and old is None:
            raise RequestError(404, "not_found", f"no model {short(name)} here to re-read; send "
                                                 "{\"bundle\": PATH} to load a new one")
        path = bundle if bundle is not None else old.bundle_path
        _check_path(path)
        async with self._turn(name, trusted):
            old = self.predictors.get(name)
            limits = limits or (old.config if old else None)
            allowed = await asyncio.to_thread(self._resolve, path, trusted)
            digest = await asyncio.to_thread(bundle_digest, allowed)
            if (unless_unchanged and old is not None and old.bundle_path == str(allowed)
                    and old.bundle_digest == digest and _same_limits(old.config, limits)):
                return {"model": name, "bundle": str(allowed), "variant": old.clf.variant, "replaced": False,
                        "unchanged": True}
            clf, report = await asyncio.to_thread(self._load_checked, allowed, name, old, trusted)
            new = self._make(name, clf, limits, str(allowed), digest)
            await new.start()
            self.predictors[name] = new  # new requests go to the new version from here on
        if old is not None:
            self._retire_later(old)
        return {"model": name, "bundle": str(allowed), "variant": clf.variant, "replaced": old is not None,
                "probe": {"passed": report.passed, "agreement": report.agreement, "reason": report.reason}}

    async def unload(self, name: str, trusted: bool = False) -> dict:
        """Stop routing to ``name``; it answers what it holds, then is freed."""
        self._refuse_unless_allowed(trusted)
        async with self._turn(name, trusted):
            if name not in self.predictors:
                raise RequestError(404, "not_found", f"no model {short(name)} here; the models are "
                                                     f"{sorted(self.predictors)}")
            if name == self.default:
                raise RequestError(409, "conflict", f"{name!r} is the default model (/predict without a "
                                                    "\"model\"); it cannot be unloaded")
            old = self.predictors.pop(name)
        self._retire_later(old)
        return {"model": name, "unloaded": True}

    def _refuse_unless_allowed(self, trusted: bool) -> None:
        if not self.keys_set and not trusted:
            raise RequestError(403, "forbidden", "loading and unloading models over HTTP needs an API key: start "
                                                 "the server with --api-key (or ORTPIPE_API_KEYS)")
        if not self._can_load:
            raise RequestError(501, "unsupported", "loading models at run time is for the local engine")

    def _turn(self, name: str, trusted: bool) -> "_Turn":
        return _Turn(self, name, trusted)

    def _resolve(self, path: str, trusted: bool) -> Path:
        """``path`` resolved, and inside ``--model-root`` (or a model's own path) unless ``trusted``."""
        try:
            return allowed_bundle(path, self._roots, own=self._own) if not trusted else Path(path).resolve()
        except PermissionError as exc:
            raise RequestError(403, "forbidden", str(exc)) from None
        except (OSError, ValueError) as exc:
            raise invalid(f"'bundle' {short(path)} cannot be resolved: {exc.__class__.__name__}") from None

    def _load_checked(self, allowed: Path, name: str, old: Predictor | None, trusted: bool):
        """Load and probe the bundle at ``allowed``; refuse it if its path resolves elsewhere afterwards."""
        keeps = "the old version still serves" if old else "nothing changed"
        try:
            before = os.stat(allowed).st_ino
            clf = self._loader(str(allowed), name, old.clf if old else None)
            report = clf.check()
        except OSError as exc:
            raise RequestError(422, "bundle", f"{allowed} was not loaded ({exc.strerror}); {keeps}") from None
        except OrtpipeError as exc:
            raise RequestError(422, "bundle", f"{allowed} was not loaded ({type(exc).__name__}: {exc}); "
                                              f"{keeps}") from None
        if self._resolve(str(allowed), trusted) != allowed or os.stat(allowed).st_ino != before:
            raise RequestError(403, "forbidden", f"{allowed} changed (a link was swapped) while it loaded; {keeps}")
        if not report.passed:
            raise RequestError(422, "bundle", f"{allowed} failed its probe check here ({report.reason}); {keeps}")
        return clf, report

    def _retire_later(self, old: Predictor) -> None:
        task = asyncio.get_running_loop().create_task(_retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def _retire(old: Predictor) -> None:
    """Let the old version answer every request routed to it, then free it."""
    while not old.idle:
        await asyncio.sleep(0.01)
    await old.stop()
    del old
    # a Predictor and its batcher refer to each other: collect the cycle now, so that the old version's
    # ONNX Runtime session and tokenizer are freed at once rather than whenever gc's last generation runs
    await asyncio.to_thread(_free_memory)


def _free_memory() -> None:
    gc.collect()
    trim = malloc_trim()  # glibc keeps freed pages in the heap: hand them back so that RSS falls too
    if trim is not None:
        trim(0)


def _check_path(path) -> None:
    if not isinstance(path, str) or not path:
        raise invalid(f"'bundle' must be a bundle folder's path, got {short(path)}")
    why = "a NUL byte" if "\0" in path else "too long" if len(path) > MAX_PATH_CHARS else None
    if why:
        raise invalid(f"'bundle' is not a usable path ({why}): {short(path)}")


class _Turn:
    """``async with``: this name's turn to change (409 over HTTP while it is busy), then the one load lock."""

    def __init__(self, served: ServedModels, name: str, trusted: bool):
        self.served, self.name, self.trusted = served, name, trusted

    async def __aenter__(self) -> None:
        busy = self.served._busy.setdefault(self.name, asyncio.Lock())
        if busy.locked() and not self.trusted:
            raise RequestError(409, "conflict", f"model {self.name!r} is being loaded or unloaded now; try again "
                                                "when that ends")
        await busy.acquire()
        try:
            await self.served._lock.acquire()
        except BaseException:
            busy.release()
            raise

    async def __aexit__(self, *exc) -> None:
        self.served._lock.release()
        busy = self.served._busy[self.name]
        busy.release()
        if not busy.locked() and not getattr(busy, "_waiters", None):  # names from HTTP: keep no lock per name
            del self.served._busy[self.name]


def _same_limits(loaded, wanted) -> bool:
    """Whether a model's limits are those wanted; ``concurrent_batches`` is the server's (its one scheduler's
    workers, ``auto`` resolved when the server started), not a model's, so it does not count."""
    return loaded == dataclasses.replace(wanted, concurrent_batches=loaded.concurrent_batches)
