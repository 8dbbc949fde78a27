"""Prometheus metrics of one server (its own registry, so several apps can live in one process).

Every ortpipe metric carries a ``model`` label: :meth:`ServerMetrics.model` gives one model's view,
whose counters and histograms are the families' children for that model.
"""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info,
                               ProcessCollector, generate_latest)

from ortpipe.serve.batcher import BatchStats

_TIME_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


class _ForModel:
    """A metric family seen by one model: ``labels(*others)`` and ``inc``/``observe``/``set`` add the model."""

    def __init__(self, family, model: str):
        self._family, self._model = family, model

    def labels(self, *values):
        return self._family.labels(*values, self._model)

    def __getattr__(self, name):
        return getattr(self._family.labels(self._model), name)


class ServerMetrics:
    """The counters, gauges and histograms ``GET /metrics`` shows, for every model of the server."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r, m = self.registry, ["model"]
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU seconds, open fds (Linux)
        # ONNX Runtime's Python API has no allocator statistics (AllocatorGetStats is C only): what the
        # arena can hold is shown by the largest batch it served and by how often it was given back
        self.families = {
            "memory": Info("ortpipe_memory", "ONNX Runtime memory setting in force", m, registry=r),
            "arena_shrinks": Gauge("ortpipe_arena_shrinks", "model calls after which the CPU arena gave back its "
                                   "free memory", m, registry=r),
            "largest_batch_tokens": Gauge("ortpipe_largest_batch_tokens", "padded tokens of the largest model call "
                                          "so far (what an arena keeps)", m, registry=r),
            "requests": Counter("ortpipe_requests", "HTTP requests answered, by route and status",
                                ["route", "status", "model"], registry=r),
            "texts": Counter("ortpipe_texts", "texts classified", m, registry=r),
            "rejections": Counter("ortpipe_rejections", "requests refused or given up, by reason",
                                  ["reason", "model"], registry=r),
            "truncated_texts": Counter("ortpipe_truncated_texts", "texts cut to the model's limit (windows off "
                                       "and truncate on); a window classifies them whole", m, registry=r),
            "windows": Counter("ortpipe_windows", "windows of texts classified whole (one or more per text)", m,
                               registry=r),
            "dropped_texts": Counter("ortpipe_dropped_texts", "texts taken off the queue unrun, by reason",
                                     ["reason", "model"], registry=r),
            "queue_depth": Gauge("ortpipe_queue_depth", "texts queued or in the model", m, registry=r),
            "batch_size": Histogram("ortpipe_batch_size", "texts per model call", m, buckets=_SIZE_BUCKETS,
                                    registry=r),
            "batch_tokens": Histogram("ortpipe_batch_tokens", "padded tokens per model call", m,
                                      buckets=_TOKEN_BUCKETS, registry=r),
            "padding_ratio": Histogram("ortpipe_batch_padding_ratio", "share of a model call's tokens that are "
                                       "padding", m, buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), registry=r),
            "queue_seconds": Histogram("ortpipe_queue_seconds", "time a request's texts waited for the model", m,
                                       buckets=_TIME_BUCKETS, registry=r),
            "tokenize_seconds": Histogram("ortpipe_tokenize_seconds", "time to tokenize a request", m,
                                          buckets=_TIME_BUCKETS, registry=r),
            "inference_seconds": Histogram("ortpipe_inference_seconds", "time of one model call", m,
                                           buckets=_TIME_BUCKETS, registry=r),
        }
        self.unrouted = _Unrouted(self)  # requests no model was found for: model=""

    def model(self, name: str, queue_depth, memory) -> "ModelMetrics":
        """One model's view; ``queue_depth`` and ``memory`` are read when ``/metrics`` is scraped."""
        return ModelMetrics(self, name, queue_depth, memory)

    def forget(self, name: str) -> None:
        """Drop a model's series (it is no longer served)."""
        for family in self.families.values():
            for labels in list(getattr(family, "_metrics", {})):
                if labels and labels[-1] == name:
                    family.remove(*labels)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Unrouted:
    """Where a request that names no served model is counted (``model=""``)."""

    name = ""

    def __init__(self, server: ServerMetrics):
        self.requests = _ForModel(server.families["requests"], "")
        self.rejections = _ForModel(server.families["rejections"], "")


class ModelMetrics:
    """What one model's requests and batches record."""

    def __init__(self, server: ServerMetrics, name: str, queue_depth, memory):
        self.name = name
        for key, family in server.families.items():
            setattr(self, key, _ForModel(family, name))
        setting = memory()
        server.families["memory"].labels(name).info({"setting": setting.setting, "requested": setting.requested})
        server.families["arena_shrinks"].labels(name).set_function(lambda: memory().shrinks)
        server.families["queue_depth"].labels(name).set_function(queue_depth)
        self._largest = 0

    def batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.batch_tokens.observe(stats.padded_tokens)
        if stats.padded_tokens > self._largest:
            self._largest = stats.padded_tokens
            self.largest_batch_tokens.set(stats.padded_tokens)
        self.padding_ratio.observe(1 - stats.tokens / stats.padded_tokens)
        self.inference_seconds.observe(stats.seconds)
        self.texts.inc(stats.size)
