"""Classify a corpus with Ray Data: read it, classify on a pool of actors, write Parquet.

    from ortpipe.distributed.data import classify_with_ray

    classify_with_ray("reviews.csv", "labels/", column="review", keep=["id"], actors=2, threads=1)

Ray Data reads the file (``read_text``, ``read_csv``, ``read_json(lines=True)``,
``read_parquet``) in parallel tasks; ``map_batches`` sends blocks of rows to
a fixed pool of actors (``ActorPoolStrategy``), each of which fetches the
bundle from the object store on its node, checks it, loads it once and runs
every batch through the runtime's batching loop; the results are written
as Parquet files into the ``out`` folder. Each actor reserves ``threads``
CPUs, as many as its ONNX Runtime threads use; reading and writing tasks ask
for none (Arrow parses and writes far faster than the model classifies, and
a node whose CPUs all went to actors must still read).

Rows are written in no fixed order and carry no row number (Ray Data does
not know a row's position in the file): ``keep`` an id column to join the
output back. Row checks (empty text, missing or non-text value, invalid
Unicode) are those of :mod:`ortpipe.runtime.stream`; a file Arrow cannot
parse stops the job with Arrow's message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ortpipe.distributed.shipping import ShippedBundle, materialize, ship_bundle
from ortpipe.runtime.batching import check_batch_size
from ortpipe.runtime.bundle import default_bundle_dir
from ortpipe.runtime.call import Scoring
from ortpipe.runtime.manifest import read_manifest
from ortpipe.runtime.errors import InputError, OrtpipeError
from ortpipe.runtime.stream import (FileSpec, Row, check_on_error, check_record, classify_rows, file_options,
                                    output_columns, parquet_schema, parquet_table, zero_shot_file)

CHUNK_ROWS = 2048
ACTORS_START_S = 300  # how long the actors may take to start (fetch and check the bundle, load the model)
IO_CPUS = 0  # reading and writing tasks: Arrow parses and writes far faster than the model classifies
PROVENANCE_COLUMNS = ("node", "variant")


def import_ray():
    """``ray`` with Ray Data, or an :class:`InputError` that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise InputError("--engine ray needs Ray: pip install 'ortpipe[ray]'") from exc
    return ray


def connect(address: str | None = None, quiet: bool = False) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://…``), or start a local one.

    Nothing happens when Ray is already initialised in this process (an app that called ``ray.init`` itself).
    """
    ray = import_ray()
    if ray.is_initialized():
        return
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=not quiet,
             logging_level="ERROR" if quiet else "INFO")


@dataclass(frozen=True)
class BatchOptions:
    """What every actor needs to turn a block of input rows into output rows."""

    spec: FileSpec  # the input file: its format, the text's column, its pair's, those kept
    on_error: str
    batch_size: int | None
    top_k: Any
    threads: int | None
    memory: str | None
    provider: str
    provenance: bool
    columns: tuple[str, ...] = field(default=())
    windowing: tuple = (None, None, None, False)  # window, stride, aggregate, return_windows
    scoring: Scoring = Scoring()
    zero_shot: Any = None  # ZeroShotOptions: candidate labels for an NLI bundle


class BundleActor:
    """A Ray Data actor: the shipped bundle checked and loaded once on its node, then one block at a time."""

    def __init__(self, shipped: ShippedBundle, options: BatchOptions):
        import ray

        from ortpipe.runtime.classifier import TextClassifier

        # idle ONNX Runtime threads stop spinning as a call returns: they share the node with Ray's reading and
        # writing tasks (measured when that meant never spinning, 1 actor × 2 threads on 2 cores: 655–664
        # sentences/s against 586–655 spinning; as it is now, 94 % of the streaming rate in one round)
        self.clf = TextClassifier.load(materialize(shipped), variant=shipped.variant, provider=options.provider,
                                       threads=options.threads, spinning=False, memory=options.memory)
        self.options = options
        self.schema = parquet_schema(options.columns)
        self.variant, self.runner = self.clf.variant, self.clf
        if options.zero_shot is None:
            self.call = file_options(self.clf, options.top_k, options.batch_size, *options.windowing,
                                     scoring=options.scoring)
        else:
            self.runner, self.call = zero_shot_file(self.clf, options.zero_shot, options.spec, options.batch_size,
                                                    *options.windowing[:3])
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch):
        options = self.options
        spec = options.spec
        missing = [name for name in (spec.text_column, spec.pair_column, *spec.keep)
                   if name and name not in batch.schema.names]
        if missing:
            raise InputError(f"{spec.path}: no column {missing[0]!r} (it has {batch.schema.names})")
        rows = []
        for record in batch.to_pylist():
            item, problem = check_record(record, spec.text_column, spec.pair_column)
            rows.append(Row(0, item, {name: record.get(name) for name in spec.keep}, problem))
        bad = next((row for row in rows if row.error is not None), None)
        if bad is not None and options.on_error == "raise":
            named = f" ({', '.join(f'{k}={v!r}' for k, v in bad.kept.items())})" if bad.kept else ""
            raise InputError(f"{spec.path}: a row{named}: {bad.error} (pass --on-error skip to write it as an "
                             "error row)")
        records = classify_rows(self.runner, rows, self.call, numbered=False)
        if options.provenance:
            for record in records:
                record.update(node=self.node, variant=self.variant)
        return parquet_table(records, self.schema)


@dataclass(frozen=True)
class RayReport:
    """What :func:`classify_with_ray` did: rows written, bad rows among them, files, actors, bytes shipped."""

    rows: int
    errors: int
    files: int
    actors: int
    shipped_bytes: int
    seconds: float


def read_dataset(source: Path, fmt: str, column: str, pair_column: str | None):
    """``source`` as a Ray Dataset whose text is in ``column`` (the ``field`` for JSON Lines, ``text`` for text)."""
    ray = import_ray()
    import pyarrow as pa
    from pyarrow import csv

    io = {"num_cpus": IO_CPUS}
    if fmt == "text":
        return ray.data.read_text(str(source), drop_empty_lines=False, **io)
    if fmt == "jsonl":
        return ray.data.read_json(str(source), lines=True, file_extensions=None, **io)
    if fmt == "parquet":
        return ray.data.read_parquet(str(source), file_extensions=None, **io)
    text_columns = {name: pa.string() for name in (column, pair_column) if name}
    return ray.data.read_csv(str(source), file_extensions=None, **io,
                             parse_options=csv.ParseOptions(delimiter="," if fmt == "csv" else "\t",
                                                            newlines_in_values=True),
                             convert_options=csv.ConvertOptions(column_types=text_columns))


def default_actors(threads: int) -> int:
    """One actor per ``threads`` CPUs of the cluster (reading and writing ask for none); at least one."""
    ray = import_ray()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, cpus // threads)


def classify_with_ray(source: str | Path, out: str | Path, *, bundle: str | Path | None = None,
                      variant: str | None = None, address: str | None = None, actors: int | None = None,
                      threads: int = 1, in_format: str | None = None, column: str = "text",
                      pair_column: str | None = None, field: str = "text", keep: Sequence[str] | None = None,
                      on_error: str = "raise", chunk_rows: int = CHUNK_ROWS, batch_size: int | None = None,
                      top_k: Any = None, memory: str | None = None, provider: str = "auto",
                      actor_resources: dict | None = None, provenance: bool = False, quiet: bool = False,
                      window: int | str | None = None, stride: int | None = None, aggregate: str | None = None,
                      return_windows: bool = False, scoring: Scoring = Scoring(), zero_shot: Any = None) -> RayReport:
    """Classify every row of ``source`` into Parquet files in the folder ``out``, on Ray Data.

    Args:
        address: the Ray cluster to join; None starts a local Ray (or uses the one already initialised).
        actors: actors in the pool (None: one per ``threads`` CPUs of the cluster).
        threads: ONNX Runtime threads per actor, and the CPUs each actor reserves.
        chunk_rows: rows per actor call (each call goes through the runtime's batching loop).
        actor_resources: Ray custom resources each actor needs, e.g. ``{"classifier": 1}`` to place
            at most one actor on each node that offers one ``classifier``.
        provider: each actor's ONNX Runtime provider (``auto``: CUDA where its node has it).
        provenance: add ``node`` (the Ray node id) and ``variant`` (what ``load()`` chose there) columns.
        Others: as :func:`ortpipe.runtime.stream.classify_file`.
    """
    started = time.perf_counter()
    source, out = Path(source), Path(out)
    spec = FileSpec.of(source, in_format, column, pair_column, field, keep)
    if not source.exists():
        raise InputError(f"cannot read {source}: no such file")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists: --engine ray writes a folder of Parquet files; give a new or empty folder")
    check_on_error(on_error)
    for name, value in (("threads", threads), ("chunk_rows", chunk_rows), ("actors", actors)):
        if value is not None:
            check_batch_size(value, name)
    manifest = read_manifest(bundle if bundle is not None else default_bundle_dir())
    answer = (output_columns(spec.keep, scoring.one_dict(top_k, manifest.problem_type, manifest.num_labels),
                             numbered=False, windows=return_windows, explain=scoring.explain) if zero_shot is None
              else [*spec.keep, "labels", "scores", "error"])
    columns = (*answer, *(PROVENANCE_COLUMNS if provenance else ()))

    ray = import_ray()
    connect(address, quiet)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not quiet
    context.raise_original_map_exception = True  # an actor's InputError reaches here as itself
    # the pool starts work once all its actors are up, so that the first one ready does not take every block
    # (and a cluster short of resources for them is an error, not a wait without end)
    context.wait_for_min_actors_s = ACTORS_START_S
    actors = actors or default_actors(threads)
    shipped = ship_bundle(bundle, variant)
    options = BatchOptions(spec, on_error, batch_size, top_k, threads, memory, provider, provenance, columns,
                           (window, stride, aggregate, return_windows), scoring, zero_shot)
    dataset = read_dataset(source, spec.format, spec.text_column, spec.pair_column).map_batches(
        BundleActor, fn_constructor_args=(shipped, options), batch_size=chunk_rows, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads, resources=actor_resources)
    try:
        dataset.write_parquet(str(out), ray_remote_args={"num_cpus": IO_CPUS})
    except Exception as exc:  # Ray wraps what the actors raised; say it as ortpipe would
        raise _ortpipe_error(exc) or InputError(f"Ray Data could not classify {source}: {_first_line(exc)}") from exc
    rows, errors, files = _count_output(out)
    return RayReport(rows, errors, files, actors, shipped.size, time.perf_counter() - started)


def _ortpipe_error(exc: BaseException) -> OrtpipeError | None:
    """The ortpipe error an actor raised, found among Ray's wrappers (``cause``, ``__cause__``), re-made plain."""
    from ray.exceptions import RayError

    pending, seen = [exc], set()
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OrtpipeError) and not isinstance(current, RayError):
            message = str(current.args[0]) if current.args else str(current)
            return type(current)(message.split("\nFailed to apply UDF")[0])  # without Ray Data's retry advice
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _count_output(out: Path) -> tuple[int, int, int]:
    """(rows, rows with an error, files) in the Parquet folder ``out``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(out.glob("*.parquet"))
    rows = errors = 0
    for path in files:
        table = pq.read_table(path, columns=["error"])
        rows += table.num_rows
        errors += table.num_rows - pc.sum(pc.is_null(table["error"])).as_py() if table.num_rows else 0
    return rows, errors, len(files)
