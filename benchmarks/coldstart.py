"""Cold start and peak memory of one path, in a fresh process.

    python -m ortpipe.benchmarks.coldstart --path ortpipe-int8 --bundle DIR --threads 2

Prints one JSON line: the wall-clock time of the first prediction (the parent
subtracts its own time of spawning the process) and the peak RSS after that
prediction and one batch of 32 review-like sentences (up to ~60 tokens).
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()

    from pathlib import Path

    from ortpipe.benchmarks.paths import load_path
    from ortpipe.benchmarks.workloads import SHORT_SENTENCE
    from ortpipe.export.validate import PROBE_TEXTS
    from ortpipe.runtime.manifest import read_manifest

    bundle = Path(args.bundle)
    path = load_path(args.path, bundle, read_manifest(bundle), args.threads)
    path.one(SHORT_SENTENCE)
    first_prediction = time.time()
    path.many(list(PROBE_TEXTS) + [SHORT_SENTENCE] * 8, 32)
    print(json.dumps({"first_prediction_at": first_prediction, "peak_rss_mb": peak_rss_kb() / 1024}))


def peak_rss_kb() -> int:
    """This process's peak resident set size (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries that across ``execve`` from the
    forked parent, so a child of a big benchmark process would report the
    parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    main()
