"""Stage 2: token ids → logits, with an ONNX Runtime session.

The feed is built from the graph's declared inputs and dtypes, so models
without ``token_type_ids`` (DistilBERT, RoBERTa) and int32 graphs just work.
``InferenceSession.run`` is thread-safe, so one :class:`OnnxModel` serves
concurrent callers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ortpipe.runtime.errors import BundleError, InferenceError, InputError
from ortpipe.runtime.memory import (DEFAULT_MEMORY, MemoryInfo, ShrinkPolicy, batch_token_cap, configure_session,
                                    resolve_memory)
from ortpipe.runtime.providers import check_activated, requested_providers
from ortpipe.runtime.tokenize import Encoded

_ONNX_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def check_threads(threads) -> None:
    """A thread count must be a positive int (bools are not): else an :class:`InputError`."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InputError(f"threads must be a positive int, got {threads!r}")


class OnnxModel:
    """An ONNX Runtime session for one bundle variant (the ``onnxruntime`` backend).

    Args:
        path: the ``.onnx`` file.
        provider: ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :mod:`.providers`).
        threads: ONNX Runtime intra-op threads; None lets ONNX Runtime decide.
        spinning: let idle ONNX Runtime threads busy-wait for the next call (the
            fastest for back-to-back calls in one process); False where other work
            needs the cores between calls, as in a server.
        memory: ``"lean"`` (default), ``"fast"`` or a setting of :mod:`.memory`.
        shared_threads: run on ONNX Runtime's process-wide thread pool (see :func:`use_shared_threads`)
            instead of a pool of the session's own; ``threads`` and ``spinning`` are then the pool's.
    """

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None, spinning: bool = True,
                 memory: str | None = None, shared_threads: bool = False):
        import onnxruntime as ort

        setting = resolve_memory(memory)
        requested = requested_providers(provider, ort.get_available_providers())
        options = ort.SessionOptions()
        configure_session(options, setting, ort)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")  # for placement()
        if not spinning:  # threads stop busy-waiting as soon as a call returns (within a call they still spin:
            # parking them between the graph's hundreds of small parallel steps cost ~1 ms per sentence here)
            options.add_session_config_entry("session.force_spinning_stop", "1")
        if shared_threads or shared_pool_exists():  # use_shared_threads()'s pool: N sessions, one set of threads
            # (ONNX Runtime refuses a session with threads of its own once the process-wide pool exists)
            shared_threads = True
            options.use_per_session_threads = False
        elif threads is not None:
            check_threads(threads)
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=requested)
        except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / RuntimeException
            raise BundleError(f"ONNX Runtime cannot load {path}: {type(exc).__name__}: "
                              f"{str(exc).strip()[:300]}") from exc
        self.provider = check_activated(provider, self.session.get_providers(), path)
        self.shared_threads = shared_threads
        self.path = Path(path)
        cap = batch_token_cap(memory) if self.provider == "cpu" else None  # GPUs want big batches
        self._memory = MemoryInfo(setting, memory or DEFAULT_MEMORY, max_batch_tokens=cap)
        self._shrink = ShrinkPolicy(ort, arena=setting == "shrink") if setting in ("shrink", "no-arena") else None
        self._inputs = []
        for node in self.session.get_inputs():
            if node.name not in KNOWN_INPUTS:
                raise BundleError(f"{path}: graph input {node.name!r} is not one ortpipe can feed "
                                  f"(it feeds {KNOWN_INPUTS})")
            if node.type not in _ONNX_INT_TYPES:
                raise BundleError(f"{path}: graph input {node.name!r} has type {node.type}, expected int64 or int32")
            self._inputs.append((node.name, _ONNX_INT_TYPES[node.type]))
        self._output = self.session.get_outputs()[0].name
        self.input_names = tuple(name for name, _ in self._inputs)
        width = self.session.get_outputs()[0].shape[-1]
        self.output_width = width if isinstance(width, int) else None

    backend = "onnxruntime"

    @property
    def threads(self) -> int | None:
        """The intra-op threads asked for (None: ONNX Runtime's choice, or the shared pool's)."""
        return self.session.get_session_options().intra_op_num_threads or None

    @property
    def memory(self) -> MemoryInfo:
        """The memory setting in force, with how many batches gave the arena back so far."""
        shrinks = self._shrink.shrinks if self._shrink else 0
        return dataclasses.replace(self._memory, shrinks=shrinks)

    @property
    def active_providers(self) -> list[str]:
        return self.session.get_providers()

    def placement(self) -> dict[str, dict[str, int]]:
        """Which execution provider runs which nodes: ``{provider: {op_type: count}}``.

        On CUDA, ops left on the CPU cost a copy each way; ``ortpipe doctor``
        lists them. Empty where ONNX Runtime cannot say (before 1.23).
        """
        try:
            subgraphs = self.session.get_provider_graph_assignment_info()
        except Exception:  # older ONNX Runtime: no such API, or the recording option unknown
            return {}
        placed: dict[str, dict[str, int]] = {}
        for subgraph in subgraphs:
            ops = placed.setdefault(subgraph.ep_name, {})
            for node in subgraph.get_nodes():
                ops[node.op_type] = ops.get(node.op_type, 0) + 1
        return placed

    def _run_bound(self, feed: dict[str, np.ndarray], run_options) -> np.ndarray:
        """One CUDA run with IO binding: each input copied to the device once, the logits bound to host memory."""
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        binding.bind_output(self._output, "cpu")
        self.session.run_with_iobinding(binding, run_options)
        return binding.copy_outputs_to_cpu()[0]

    def feed(self, encoded: Encoded) -> dict[str, np.ndarray]:
        """The input dict for ``session.run``: only the graph's inputs, in its dtypes."""
        feed = {}
        for name, dtype in self._inputs:
            array = getattr(encoded, name)
            feed[name] = array if array.dtype == dtype else array.astype(dtype)
        return feed

    def __call__(self, encoded: Encoded) -> np.ndarray:
        """Run the graph; returns float32 logits of shape ``(batch, num_labels)``."""
        if len(encoded) == 0:
            raise InferenceError("cannot run the model on an empty batch")
        large = self._shrink is not None and self._shrink.is_large(*encoded.input_ids.shape)
        run_options = self._shrink.run_options if large else None
        try:
            if self.provider == "cuda":
                logits = self._run_bound(self.feed(encoded), run_options)
            else:
                (logits,) = self.session.run([self._output], self.feed(encoded), run_options)
        except Exception as exc:
            raise InferenceError(f"ONNX Runtime failed on a batch of shape {encoded.input_ids.shape} "
                                 f"with provider {self.provider}: {str(exc).strip()[:300]}") from exc
        if large:
            self._shrink.after_shrink()
        return logits.astype(np.float32, copy=False)


_shared_pool: int | None = None


def shared_pool_exists() -> bool:
    """Whether this process made ONNX Runtime's shared pool: every session made after must use it."""
    return _shared_pool is not None


def use_shared_threads(threads: int | None = None) -> int:
    """Create ONNX Runtime's process-wide intra-op pool (once per process); returns its size.

    Sessions made with ``shared_threads=True`` all run on it, so a process serving N models keeps one
    set of threads for the cores instead of N (``onnxruntime.set_global_thread_pool_sizes``). It must be
    made before the process's first session; asking again for another size is an :class:`InputError`.
    """
    import os

    import onnxruntime as ort

    global _shared_pool
    size = threads or os.cpu_count() or 1
    check_threads(size)
    if _shared_pool is None:
        ort.set_global_thread_pool_sizes(size, 1)
        _shared_pool = size
    elif threads is not None and size != _shared_pool:
        raise InputError(f"ONNX Runtime's shared thread pool has {_shared_pool} threads already; it cannot "
                         f"change to {size} in this process")
    return _shared_pool
