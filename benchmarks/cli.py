"""``ortpipe bench``: every path, every workload, one table (needs ``ortpipe[bench]``)."""

from __future__ import annotations

import json
from pathlib import Path

from ortpipe.runtime.errors import OrtpipeError


def add_commands(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench", help="compare ortpipe with the PyTorch paths: latency, throughput, memory, accuracy",
        description="Run the benchmark workloads on each path and print one table with speed-ups over "
                    "the seed PyTorch path. Figures are specific to the machine they ran on.")
    bench.add_argument("--bundle", type=Path, help="bundle folder (default: the default bundle)")
    bench.add_argument("--paths", nargs="+", help="paths to run (default: every CPU path, seed first, "
                                                  "and the CUDA ones when ONNX Runtime has CUDA)")
    bench.add_argument("--threads", type=int, help="threads for every path (default: all cores)")
    bench.add_argument("--data", type=Path, help="labelled TSV for throughput/accuracy "
                                                 "(default: SST-2 test.tsv when found)")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions, 256 sentences, no cold start: a "
                                                              "smoke test whose figures are noisy, not ones to "
                                                              "compare")
    bench.add_argument("--server", action="store_true", help="also measure ortpipe serve's CPU per sentence against "
                                                              "in-process, at 1 and 64 clients (server_cost)")
    bench.add_argument("--json", type=Path, help="write the raw figures here")
    bench.add_argument("--plot", type=Path, help="write a PNG chart here")
    bench.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    try:
        import tqdm  # noqa: F401
        from ortpipe.benchmarks.suite import BenchConfig, run_bench
    except ImportError as exc:
        raise OrtpipeError(f"ortpipe bench needs the bench extra ({exc.name} is missing): "
                           "pip install 'ortpipe[bench]'") from exc
    from tqdm import tqdm

    from ortpipe.benchmarks.paths import check_paths, default_path_names
    from ortpipe.benchmarks.report import format_table, write_plot
    from ortpipe.runtime.bundle import default_bundle_dir, open_bundle

    bundle = args.bundle or default_bundle_dir()
    manifest = open_bundle(bundle, verify=True).manifest  # a clear error now rather than deep inside a path
    runnable = default_path_names(manifest)
    paths = tuple(args.paths or runnable)
    check_paths(paths, manifest)
    options = {"bundle": bundle, "paths": paths, "data": args.data}
    if args.threads:
        options["threads"] = args.threads
    config = BenchConfig.quick_config(**options) if args.quick else BenchConfig(**options)
    steps = 1 + len(paths) * 4 + (len(paths) if config.cold_start else 0)
    with tqdm(total=steps, desc="ortpipe bench", unit="step", leave=False) as bar:
        def step(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update(1)

        results = run_bench(config, step)
    print(format_table(results))
    unrunnable = [p for p in default_path_names() if p not in runnable]
    if unrunnable and not args.paths:
        print(f"Skipped: {', '.join(unrunnable)}: this bundle has no static-int8 variant (export with --static-int8)")
    if args.quick:
        print("(--quick: a short pass over 256 sentences with few repetitions; its figures move by tens of percent "
              "from run to run. Run `ortpipe bench` without --quick for figures to compare.)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        write_plot(results, args.plot)
    if args.server:
        _server_section(bundle, config, args.threads or 2)
    return 0


def _server_section(bundle, config, threads: int) -> None:
    """The server's CPU per sentence against in-process (``benchmarks/server_cost.py``, one round)."""
    from ortpipe.benchmarks.server_cost import measure, summary
    from ortpipe.export.data import read_labelled_tsv, sst2_dir

    data = config.data or sst2_dir() / "test.tsv"
    if not data.is_file():
        raise OrtpipeError(f"ortpipe bench --server needs sentences: --data FILE ({data} was not found)")
    texts = read_labelled_tsv(data, limit=config.throughput_limit).texts
    print("\nThe server's CPU per sentence (ortpipe serve on 127.0.0.1, one sentence per request):")
    print(summary(measure(str(bundle), texts, threads, [], idle_s=2.0 if config.quick else 10.0)))
