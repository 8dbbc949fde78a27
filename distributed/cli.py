"""``--engine ray`` for ``ortpipe classify`` and ``ortpipe serve`` (their parsers live with their commands)."""

from __future__ import annotations

import sys


def classify(args) -> int:
    """``ortpipe classify --engine ray --file IN --out FOLDER``: Ray Data, see :mod:`.data`."""
    from ortpipe.distributed.data import CHUNK_ROWS, classify_with_ray
    from ortpipe.runtime.cli import scoring_of, window_kwargs
    from ortpipe.runtime.errors import InputError
    from ortpipe.runtime.zero_shot_cli import zero_shot_of

    if args.resume:
        raise InputError("--resume is for the local engine; a Ray Data job retries lost work itself")
    if args.out_format not in (None, "parquet"):
        raise InputError("--engine ray writes Parquet files into the --out folder; --out-format must be parquet")
    top_k = "all" if args.all_labels else args.top_k
    report = classify_with_ray(args.file, args.out, bundle=args.bundle, variant=args.variant, address=args.address,
                               actors=args.actors, threads=args.threads or 1, in_format=args.in_format,
                               column=args.column, pair_column=args.pair_column, field=args.field, keep=args.keep,
                               on_error=args.on_error, chunk_rows=args.chunk_rows or CHUNK_ROWS,
                               batch_size=args.batch_size, top_k=top_k, memory=args.memory, provider=args.provider,
                               quiet=args.quiet, scoring=scoring_of(args), zero_shot=zero_shot_of(args),
                               **window_kwargs(args))
    print(f"ortpipe: {report.rows} rows written to {args.out}/ in {report.files} Parquet files "
          f"({report.errors} with an error) by {report.actors} Ray actors in {report.seconds:.1f} s", file=sys.stderr)
    return 0


def serve(args, config, specs=None) -> int:
    """``ortpipe serve --engine ray``: the app of ``ortpipe serve`` on Ray Serve, see :mod:`.online`."""
    try:
        from ray import serve as _  # noqa: F401
    except ImportError as exc:
        from ortpipe.runtime.errors import OrtpipeError

        raise OrtpipeError("--engine ray needs Ray Serve: pip install 'ortpipe[ray]'") from exc
    from ortpipe.distributed.online import replica_options, serve_until_signalled

    return serve_until_signalled(args.bundle, args.variant, replica_options(args, config), args.replicas,
                                 args.address, specs)
