"""How ONNX Runtime's CPU memory is managed: one knob, ``memory=``.

ONNX Runtime's CPU arena keeps every block it ever grew to: after one batch of
long texts a process holds that batch's activations for good. The settings:

- ``"arena"``: ONNX Runtime's default arena (grows by powers of two, never gives back).
- ``"no-arena"``: every tensor from the system allocator (``enable_cpu_mem_arena = False``),
  the heap trimmed after a larger-than-usual batch.
- ``"same-as-requested"``: the arena grows by exactly what is asked
  (``arena_extend_strategy = kSameAsRequested``, via a process-wide arena).
- ``"shrink"``: the default arena, told to give back its free chunks after a
  batch larger than usual (run option ``memory.enable_memory_arena_shrinkage``).

``"lean"`` (the default) is ``"shrink"`` plus, on the CPU provider, a cap of
512 padded tokens per model call in ``TextClassifier.__call__`` (the server's
batcher has its own cap): the arena then only ever grows to what such a call
needs. ``"fast"`` is ONNX Runtime's default arena with the caller's batches
left whole (for GPUs, where big batches pay). Chosen by measurement
(``benchmarks/memory_settings.py``, docs/memory.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections import deque
from dataclasses import dataclass

from ortpipe.runtime.errors import InputError

SETTINGS = ("arena", "no-arena", "same-as-requested", "shrink")
ALIASES = {"lean": "shrink", "fast": "arena"}
DEFAULT_MEMORY = "lean"
# "lean" also caps a model call at this many padded tokens (rows × longest row):
# the arena then never grows past what such a call needs
LEAN_BATCH_TOKENS = 512

# A batch is "larger than usual" when what its attention allocates (rows × length²)
# is over SHRINK_FACTOR × the 90th percentile of the last 256 batches, and over
# SHRINK_FLOOR (a full batch of 64 rows of 128 tokens).
SHRINK_FACTOR = 2.0
SHRINK_FLOOR = 64 * 128 * 128
_RECENT = 256

_env_arena_lock = threading.Lock()
_env_arena_registered = False


def resolve_memory(memory: str | None) -> str:
    """The setting a ``memory=`` value names (``None`` → the default, ``"lean"``)."""
    memory = DEFAULT_MEMORY if memory is None else memory
    if not isinstance(memory, str) or (memory not in SETTINGS and memory not in ALIASES):
        raise InputError(f"memory must be one of {sorted(ALIASES)} or {list(SETTINGS)}, got {memory!r}")
    return ALIASES.get(memory, memory)


def _register_same_as_requested_arena(ort) -> None:
    """Register one process-wide CPU arena that grows by exactly what is requested."""
    global _env_arena_registered
    with _env_arena_lock:
        if _env_arena_registered:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))
        _env_arena_registered = True


def batch_token_cap(memory: str | None) -> int | None:
    """Padded tokens per model call that a ``memory=`` value implies (None: no cap)."""
    return LEAN_BATCH_TOKENS if (DEFAULT_MEMORY if memory is None else memory) == "lean" else None


def configure_session(options, setting: str, ort) -> None:
    """Apply a resolved setting to ``ort.SessionOptions`` before the session is made."""
    if setting == "no-arena":
        options.enable_cpu_mem_arena = False
    elif setting == "same-as-requested":
        _register_same_as_requested_arena(ort)
        options.add_session_config_entry("session.use_env_allocators", "1")


def malloc_trim():
    """glibc's ``malloc_trim``, which hands freed heap pages back to the system; None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl, macOS, Windows: nothing to call
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``count`` (unless ``$MALLOC_ARENA_MAX`` says otherwise); False elsewhere.

    A long-running server whose threads allocate and free whole models (reloads) fragments one arena per
    thread; with 2 the heap it gives back (``malloc_trim``) stays at its level. Measured in
    ``tests/test_serve_hostile.py``'s 25 reloads and SIGHUPs under traffic: at rest, the last level was 11-12 %
    over the level after 5 rounds in 2 of 6 runs with glibc's default arenas, and within 10 % in 6 of 6 with 2.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):  # not glibc
        return False


class ShrinkPolicy:
    """Decides, per batch, whether memory is given back after the run.

    Only batches larger than usual shrink (see ``SHRINK_FACTOR``), so a steady
    stream of ordinary batches keeps its warm arena. After such a batch the
    arena frees its unused chunks (run option
    ``memory.enable_memory_arena_shrinkage``) and, on glibc, ``malloc_trim``
    returns the freed pages to the system (without it they stay in the
    process's heap and RSS does not fall).
    """

    def __init__(self, ort, arena: bool = True, device: str = "cpu:0"):
        self._recent: deque[int] = deque(maxlen=_RECENT)
        self._lock = threading.Lock()
        self.run_options = None  # without an arena there is nothing to shrink: only the heap is trimmed
        if arena:
            self.run_options = ort.RunOptions()
            self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", device)
        self._trim = malloc_trim()
        self.shrinks = 0

    def is_large(self, rows: int, width: int) -> bool:
        cost = rows * width * width
        with self._lock:
            recent = sorted(self._recent)
            self._recent.append(cost)
            usual = recent[int(len(recent) * 0.9)] if recent else 0
            large = cost > max(SHRINK_FLOOR, SHRINK_FACTOR * usual)
            if large:
                self.shrinks += 1
            return large

    def after_shrink(self) -> None:
        if self._trim is not None:
            self._trim(0)


@dataclass(frozen=True)
class MemoryInfo:
    """What ``ortpipe doctor`` and ``GET /info`` show of the memory setting in force."""

    setting: str
    requested: str
    shrinks: int = 0
    max_batch_tokens: int | None = None

    @property
    def fast(self) -> bool:
        """ONNX Runtime's own arena (``"fast"``, or ``"arena"`` by name): the caller's batches are kept whole."""
        return self.setting == "arena"

    def as_dict(self) -> dict:
        return {"setting": self.setting, "requested": self.requested, "shrinks": self.shrinks,
                "max_batch_tokens": self.max_batch_tokens, "description": self.describe()}

    def describe(self) -> str:
        text = {"arena": "ONNX Runtime's CPU arena (keeps its largest batch)",
                "no-arena": "no arena (system allocator)",
                "same-as-requested": "arena growing by what is requested",
                "shrink": "arena, given back after a larger-than-usual batch"}[self.setting]
        alias = f" ({self.requested!r})" if self.requested != self.setting else ""
        cap = f"; model calls capped at {self.max_batch_tokens} padded tokens" if self.max_batch_tokens else ""
        return f"{self.setting}{alias}: {text}{cap}"
