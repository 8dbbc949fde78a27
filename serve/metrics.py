"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info,
                               ProcessCollector, generate_latest)

from ortpipe.serve.batcher import BatchStats

_TIME_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


class ServerMetrics:
    """The counters, gauges and histograms ``GET /metrics`` shows."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth, memory):
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU seconds, open fds (Linux)
        # ONNX Runtime's Python API has no allocator statistics (AllocatorGetStats is C only): what the
        # arena can hold is shown by the largest batch it served and by how often it was given back
        Info("ortpipe_memory", "ONNX Runtime memory setting in force", registry=r).info(
            {"setting": memory().setting, "requested": memory().requested})
        Gauge("ortpipe_arena_shrinks", "model calls after which the CPU arena gave back its free memory",
              registry=r).set_function(lambda: memory().shrinks)
        self.largest_batch_tokens = Gauge("ortpipe_largest_batch_tokens",
                                          "padded tokens of the largest model call so far (what an arena keeps)",
                                          registry=r)
        self._largest = 0
        self.requests = Counter("ortpipe_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.texts = Counter("ortpipe_texts", "texts classified", registry=r)
        self.rejections = Counter("ortpipe_rejections", "requests refused or given up, by reason",
                                  ["reason"], registry=r)
        self.truncated_texts = Counter("ortpipe_truncated_texts", "texts cut to the model's limit (windows off and "
                                       "truncate on); a window classifies them whole", registry=r)
        self.windows = Counter("ortpipe_windows", "windows of texts classified whole (one or more per text)",
                               registry=r)
        self.dropped_texts = Counter("ortpipe_dropped_texts", "texts taken off the queue unrun, by reason",
                                     ["reason"], registry=r)
        self.queue_depth = Gauge("ortpipe_queue_depth", "texts queued or in the model", registry=r)
        self.queue_depth.set_function(queue_depth)
        self.batch_size = Histogram("ortpipe_batch_size", "texts per model call", buckets=_SIZE_BUCKETS,
                                    registry=r)
        self.batch_tokens = Histogram("ortpipe_batch_tokens", "padded tokens per model call",
                                      buckets=_TOKEN_BUCKETS, registry=r)
        self.padding_ratio = Histogram("ortpipe_batch_padding_ratio", "share of a model call's tokens that are padding",
                                       buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), registry=r)
        self.queue_seconds = Histogram("ortpipe_queue_seconds", "time a request's texts waited for the model",
                                       buckets=_TIME_BUCKETS, registry=r)
        self.tokenize_seconds = Histogram("ortpipe_tokenize_seconds", "time to tokenize a request",
                                          buckets=_TIME_BUCKETS, registry=r)
        self.inference_seconds = Histogram("ortpipe_inference_seconds", "time of one model call",
                                           buckets=_TIME_BUCKETS, registry=r)

    def batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.batch_tokens.observe(stats.padded_tokens)
        if stats.padded_tokens > self._largest:
            self._largest = stats.padded_tokens
            self.largest_batch_tokens.set(stats.padded_tokens)
        self.padding_ratio.observe(1 - stats.tokens / stats.padded_tokens)
        self.inference_seconds.observe(stats.seconds)
        self.texts.inc(stats.size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
