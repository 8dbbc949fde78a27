"""Where ``ortpipe serve``'s CPU goes per sentence: py-spy samples of a loaded server, grouped by what they do.

    python -m ortpipe.benchmarks.server_profile --clients 1 --seconds 20 --json profile.json

Starts ``ortpipe serve`` on the default bundle, loads it with ``--clients`` clients posting one SST-2
sentence per request, and records it with ``py-spy record --native --idle --format raw`` (collapsed stacks,
every thread). Each sample's leaf frame (its self time) is put in a group by the first rule its stack
matches, innermost frame first: HTTP parsing, JSON, routing, tokenizing, planning, ONNX Runtime compute,
ONNX Runtime spinning or waiting, result shaping, metrics, the event loop, idle. Needs py-spy (the bench
extra) and the right to ptrace the server (root, or ``kernel.yama.ptrace_scope=0``).

py-spy samples Python threads only: ONNX Runtime's own pool threads (all but the calling one) never appear,
so "ONNX Runtime compute" here is the calling thread's part. The split of the server's CPU between its event
loop thread and the rest comes from ``/proc`` in :mod:`ortpipe.benchmarks.server_cost`.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ortpipe.benchmarks.http_client import free_port, run_client, server
from ortpipe.benchmarks.report import publish, stamped
from ortpipe.benchmarks.server_cost import _clients

# (group, pattern on one frame "function (file)"), tried innermost frame first
GROUPS = [
    ("ONNX Runtime spinning or waiting", r"ThreadPool.*(Spin|Wait|Park)|SpinPause|WorkerLoop|sched_yield|"
                                         r"futex|pthread_cond|nsync|EigenNonBlocking.*Steal"),
    ("ONNX Runtime compute", r"onnxruntime|MlasGemm|Mlas|libonnxruntime|QGemm|DynamicQuantize"),
    ("tokenizing", r"tokenizers|tokenize\.py|encode_batch|encode_whole|collate"),
    ("JSON", r"json|orjson|_json|dumps|loads|scanstring"),
    ("HTTP protocol: parsing and writing", r"httptools|h11|uvicorn/protocols|granian|on_header|on_url|on_body|data_received"),
    ("routing and middleware", r"starlette|fastapi|routing|middleware|asgi\.py"),
    ("planning and batching", r"call\.py|batching\.py|batcher\.py|scheduler\.py|plan_rows|run_in_batches"),
    ("result shaping", r"postprocess|finish|predict\.py|label_dicts|calibration"),
    ("metrics", r"prometheus|metrics\.py"),
    ("event loop and sockets", r"uvloop|asyncio|selectors|epoll|socket|sendmsg|recv|writev"),
]


# a thread blocked in the kernel: py-spy's own idle filter does not apply with --native, so these are dropped
WAITING = re.compile(r"PyThread_acquire_lock_timed|_queue_SimpleQueue_get|epoll_wait|epoll_pwait|"
                     r"pthread_cond_(timed)?wait|sem_(timed)?wait|__futex|nanosleep|select \(|poll \(")


def group_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in GROUPS:
            if re.search(pattern, frame):
                return name
    return "other Python"


def grouped(raw: str) -> dict:
    """Collapsed stacks (``frame;frame;… count`` per line) → {group: share of samples}, and the top leaves."""
    groups, leaves, total = collections.Counter(), collections.Counter(), 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if any(WAITING.search(frame) for frame in frames[-6:]):
            continue
        groups[group_of(frames)] += int(count)
        leaves[frames[-1][:120]] += int(count)
        total += int(count)
    return {"samples": total, "groups": {k: round(v / total, 4) for k, v in groups.most_common()},
            "top_leaves": [(k, round(v / total, 4)) for k, v in leaves.most_common(15)]}


def profile(bundle: str | None, clients: int, seconds: float, threads: int, texts: list[str],
            flags: list[str]) -> dict:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    port = free_port()
    command = [sys.executable, "-m", "ortpipe.cli", "serve", "--port", str(port), "--threads", str(threads),
               "--no-access-log", *(["--bundle", bundle] if bundle else []), *flags]
    with server(command, port) as (url, process), tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "stacks.txt"
        run_client(_clients(url, texts[:64], clients))
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                run_client(_clients(url, texts, clients))

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(1)
        subprocess.run([spy, "record", "--pid", str(process.pid), "--native", "--threads", "--rate",
                        "250", "--duration", str(int(seconds)), "--format", "raw", "--output", str(out)],
                       check=True, capture_output=True)
        stop.set()
        loader.join(timeout=120)
        return {"clients": clients, "seconds": seconds, **grouped(out.read_text())}


def main(argv=None) -> int:
    from ortpipe.export.data import read_labelled_tsv, sst2_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--serve-flag", action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    texts = read_labelled_tsv(sst2_dir() / "test.tsv").texts
    report = stamped(threads=args.threads, **profile(args.bundle, args.clients, args.seconds, args.threads, texts,
                                                     args.serve_flag))
    return publish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
