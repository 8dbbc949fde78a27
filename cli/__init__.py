"""The ``ortpipe`` command, above every package: it registers each package's subcommands and engines.

    ortpipe classify "This course is amazing!"      # or: python -m ortpipe.cli classify …

Arrows point down from here: ``runtime`` (classify, doctor), ``export`` (export, finetune), ``benchmarks``
(bench) and ``serve`` (serve) each add their own subcommands, and ``--engine ray`` reaches
``distributed`` through the hooks set below, so that no lower package names a higher one. Each module
imports its heavy libraries only when its command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ortpipe.benchmarks import cli as bench_cli
from ortpipe.export import cli as export_cli
from ortpipe.runtime import cli as runtime_cli
from ortpipe.runtime.errors import OrtpipeError
from ortpipe.serve import cli as serve_cli


def _ray_classify(args) -> int:
    from ortpipe.distributed.cli import classify

    return classify(args)


def _ray_serve(args, config, specs) -> int:
    from ortpipe.distributed.cli import serve

    return serve(args, config, specs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ortpipe")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand's parser; ``--engine ray`` runs through ``ray_classify`` and ``ray_serve``."""
    parser = argparse.ArgumentParser(prog="ortpipe", description="Run a fine-tuned text classifier fast and lean: "
                                     "classify texts and files, check a machine, export a model, benchmark, serve.")
    parser.add_argument("--version", action="version", version=f"ortpipe {_version()}")
    parser.set_defaults(ray_classify=_ray_classify, ray_serve=_ray_serve)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for package in (runtime_cli, export_cli, bench_cli, serve_cli):
        package.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except OrtpipeError as exc:
        print(f"ortpipe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
