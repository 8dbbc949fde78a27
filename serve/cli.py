"""``ortpipe serve``: the bundle as an HTTP service (needs ``pip install 'ortpipe[serve]'``)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from dataclasses import fields

from ortpipe.runtime.errors import OrtpipeError
from ortpipe.runtime.cli import add_memory_argument
from ortpipe.runtime.load_options import add_backend_options
from ortpipe.serve.config import ServeConfig

_HELP = {
    "host": "address to listen on", "port": "port to listen on",
    "max_batch_tokens": "padded tokens per model call", "max_batch_size": "texts per model call",
    "max_wait_ms": "how long to wait for more texts before a model call",
    "concurrent_batches": "model calls running at once, each on its own thread (side by side, on a second "
                          "one-thread session: less CPU per sentence under load, more memory); 0 (auto): 2 for "
                          "CPU models with 2 or more threads of their own and --memory fast, else 1",
    "max_client_batch": "texts per request (more: 413)", "max_body": "bytes per request body (more: 413)",
    "max_queue": "texts waiting for the model, all requests together (more: 429)",
    "timeout_ms": "a text not run by then is answered 504 (per request: header x-timeout-ms)",
    "drain_s": "on SIGTERM, seconds allowed to finish queued work",
    "window": "long texts: classify each whole through windows of N tokens (a number), the bundle's recommended "
              "window (auto), or read the first max-length tokens (off); a request's \"window\" field wins",
    "max_client_windows": "windows per request (more: 413); each window counts as a text against --max-queue",
    "head_timeout_s": "seconds a request's line and headers may take to arrive, and a body between two parts "
                      "(slower: the connection is closed, or 408)",
    "max_connections": "open connections at once (more are closed as they arrive)",
}


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a bundle over HTTP (TEI-compatible /predict, dynamic batching, metrics)",
        description="Serve a bundle over HTTP with dynamic batching. Every limit is a flag and an ORTPIPE_* "
                    "environment variable (e.g. ORTPIPE_MAX_QUEUE); flags win.")
    parser.add_argument("--bundle", help="bundle folder (default: the default bundle), served alone")
    parser.add_argument("--model", action="append", metavar="NAME=PATH",
                        help="serve this bundle as NAME (a bare PATH is named by its folder); repeat it for several "
                             "models in one process, on one shared ONNX Runtime thread pool")
    parser.add_argument("--config", help="a serve.toml: [server] settings and one [models.NAME] table per model "
                                         "(bundle, variant, memory, limits, window)")
    parser.add_argument("--default-model", help="the model /predict answers without a \"model\" field (default: "
                                                "the first)")
    parser.add_argument("--api-key", action="append", metavar="KEY",
                        help="require 'Authorization: Bearer KEY' on every route but /health (repeatable; or "
                             "ORTPIPE_API_KEYS=k1,k2); also turns on POST /models/{name}/load and /unload")
    parser.add_argument("--public-metrics", action="store_true", help="with --api-key: /metrics without a key")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="one line on stderr per request (model, status, milliseconds, request id) and per "
                             "load or unload (default on; --no-access-log silences it)")
    parser.add_argument("--private-docs", action="store_true",
                        help="with --api-key: /docs and /openapi.json need a key too (default: open, the schema "
                             "holds no secret and a browser cannot send the key to /docs)")
    parser.add_argument("--model-root", action="append", metavar="DIR",
                        help="a folder under which POST /models/{name}/load may read bundles (repeatable; a "
                             "model's own bundle path is always allowed)")
    parser.add_argument("--variant", help="fp32, optimized, int8 … (default: what load() picks on this machine)")
    parser.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    add_backend_options(parser)
    parser.add_argument("--spinning", action=argparse.BooleanOptionalAction, default=False,
                        help="let ONNX Runtime's threads busy-wait a moment after each model call, as in-process "
                             "(default: no; they stop as each call returns: measured on 2 cores at one client, "
                             "16-30 %% less server CPU per sentence for 0.1-0.3 ms more p50, since a spinning "
                             "thread takes a core from the HTTP work between calls)")
    add_memory_argument(parser)
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="serve here with uvicorn (local, default), or as a Ray Serve deployment with the same "
                             "API (ray: pip install 'ortpipe[ray]')")
    parser.add_argument("--replicas", type=int, default=1, help="--engine ray: replicas, each with --threads CPUs")
    parser.add_argument("--address", help="--engine ray: the Ray cluster to join (auto, HOST:PORT); default: start "
                                          "a local Ray")
    try:
        defaults = {**ServeConfig().as_dict(), **ServeConfig.env_defaults()}
    except ValueError as exc:
        parser.error(str(exc))
    for spec in fields(ServeConfig):
        default = defaults[spec.name]
        parser.add_argument(f"--{spec.name.replace('_', '-')}", type=type(default), default=default,
                            help=f"{_HELP[spec.name]} (default {default}; ORTPIPE_{spec.name.upper()})")
    parser.set_defaults(run=_run_serve, serve_defaults=defaults)


def _config(args) -> ServeConfig:
    try:
        return ServeConfig(**{spec.name: getattr(args, spec.name) for spec in fields(ServeConfig)}).check()
    except ValueError as exc:
        raise OrtpipeError(str(exc)) from exc


def _run_on_ray(args, specs: list | None = None) -> int:
    """``--engine ray``: the same app on Ray Serve (run from :mod:`ortpipe.distributed.cli`)."""
    if args.replicas < 1:
        raise OrtpipeError(f"--replicas must be at least 1, got {args.replicas}")
    return args.ray_serve(args, _config(args), specs)  # set by ortpipe.cli, above the distributed package


def _model_specs(args) -> list | None:
    """The models of ``--model``/``--config`` (the file's [server] table applied to ``args``); None for one
    ``--bundle``."""
    from ortpipe.serve.models import parse_model_flag, read_config, unique

    if not args.model and not args.config:
        return None
    if args.bundle:
        raise OrtpipeError("give --bundle (one model) or --model/--config (several), not both")
    server, specs = read_config(args.config) if args.config else ({}, [])
    specs = unique([*specs, *(parse_model_flag(raw) for raw in args.model or ())])
    for key, value in server.items():  # the file's [server] settings, unless a flag says otherwise
        given = getattr(args, key) != args.serve_defaults[key] if key in args.serve_defaults \
            else getattr(args, key) is not None
        if not given:
            setattr(args, key, value)
    return specs


def _load_models(args, specs: list, config: ServeConfig) -> dict:
    """Every model of ``specs`` on ONNX Runtime's one process-wide thread pool: ``{name: (clf, its config)}``."""
    from ortpipe.runtime.inference import use_shared_threads

    use_shared_threads(args.threads)
    load = _loader(args, specs)
    models = {}
    for spec in specs:
        clf = load(spec.bundle, spec.name, None)
        try:
            models[spec.name] = (clf, spec.config(config))
        except ValueError as exc:
            raise OrtpipeError(f"model {spec.name!r}: {exc}") from exc
    return models


def _loader(args, specs: list | None):
    """How ``POST /models/{name}/load`` loads a bundle: with the model's own settings, or the flags'."""
    from ortpipe.runtime.classifier import TextClassifier

    by_name = {spec.name: spec for spec in specs or ()}

    def load(path: str, name: str, old):
        return TextClassifier.load(path, **_load_options(args, by_name.get(name), several=specs is not None)
                                   .as_kwargs())
    return load


def _load_options(args, spec=None, several: bool = True):
    """How a model is loaded: its own ``serve.toml`` settings, else the flags'; several share one thread pool."""
    from ortpipe.runtime.load_options import LoadOptions

    return LoadOptions(variant=(spec.variant if spec else None) or args.variant,
                       provider=(spec.provider if spec else None) or args.provider,
                       memory=(spec.memory if spec else None) or args.memory, spinning=args.spinning,
                       threads=None if several else args.threads, shared_threads=several,
                       backend=None if several else args.backend, workload=None if several else args.workload)


async def _reread_config(app, args, config: ServeConfig) -> None:
    """SIGHUP: every model of the new ``--config`` loaded (re-read if its bundle is the same), the others unloaded.

    A model that fails to load keeps its old version and the failure is printed; nothing else changes for it.
    """
    from ortpipe.serve.models import read_config
    from ortpipe.serve.errors import ServeError

    try:
        _, specs = read_config(args.config)
    except OrtpipeError as exc:
        print(f"ortpipe serve: SIGHUP: {exc}; nothing changed", file=sys.stderr, flush=True)
        return
    wanted, served = {spec.name for spec in specs}, app.state.served
    for spec in specs:
        try:
            done = await served.load(spec.name, spec.bundle, trusted=True, limits=spec.config(config),
                                     unless_unchanged=True)
            said = "unchanged" if done.get("unchanged") else "reloaded" if done["replaced"] else "loaded"
            print(f"ortpipe serve: SIGHUP: {spec.name} {said} from {done['bundle']} ({done['variant']})",
                  file=sys.stderr, flush=True)
        except (ServeError, ValueError) as exc:
            print(f"ortpipe serve: SIGHUP: {spec.name}: {exc}", file=sys.stderr, flush=True)
    for name in sorted(set(served.predictors) - wanted):
        try:
            await served.unload(name, trusted=True)
            print(f"ortpipe serve: SIGHUP: {name} unloaded", file=sys.stderr, flush=True)
        except ServeError as exc:
            print(f"ortpipe serve: SIGHUP: {name}: {exc}", file=sys.stderr, flush=True)


def _run_serve(args) -> int:
    specs = _model_specs(args)
    if args.engine == "ray":
        return _run_on_ray(args, specs)
    try:
        import uvicorn
    except ImportError as exc:
        raise OrtpipeError(f"ortpipe serve needs the serve extra ({exc.name} is missing): "
                           "pip install 'ortpipe[serve]'") from exc
    from ortpipe.runtime.memory import limit_malloc_arenas

    limit_malloc_arenas()  # before the models load: reloads then give their memory back (see its docstring)
    _access_log(args.access_log)
    app, config = _build_app(args, specs)
    if config.host not in ("127.0.0.1", "localhost", "::1") and not app.state.ortpipe.served.keys_set:
        print(f"ortpipe serve: warning: listening on {config.host} without an API key: anyone who can reach this "
              "port can use every model; give --api-key KEY (or ORTPIPE_API_KEYS)", file=sys.stderr, flush=True)
    server = _draining_server(uvicorn, app, args, config)
    served = ", ".join(f"{name}: {p.bundle_path}, {p.clf.variant}, {p.clf.provider}"
                       for name, p in app.state.served.predictors.items())
    print(f"ortpipe serve: http://{config.host}:{config.port} ({served})", file=sys.stderr, flush=True)
    server.run()
    return 0


def _access_log(on: bool) -> None:
    """``ortpipe.access`` lines on stderr, ``ortpipe serve: …`` as the server's other lines."""
    import logging

    log = logging.getLogger("ortpipe.access")
    log.propagate = False
    if on:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("ortpipe serve: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _build_app(args, specs: list | None):
    """The app of ``args`` with its models loaded: (app, the server's config)."""
    try:
        from ortpipe.serve.app import create_app
    except ImportError as exc:
        raise OrtpipeError(f"ortpipe serve needs the serve extra ({exc.name} is missing): "
                           "pip install 'ortpipe[serve]'") from exc
    from ortpipe.runtime.classifier import TextClassifier
    from ortpipe.serve.security import api_keys_from

    config, api_keys = _config(args), api_keys_from(args.api_key)  # a blank key refuses before anything loads
    if specs is None:
        models = TextClassifier.load(args.bundle, **_load_options(args, several=False).as_kwargs())
    else:
        models = _load_models(args, specs, config)
    try:
        app = create_app(models, config, default_model=args.default_model, api_keys=api_keys,
                         public_metrics=args.public_metrics, model_roots=args.model_root or (),
                         private_docs=args.private_docs,
                         loader=_loader(args, specs))
    except ValueError as exc:  # a setting this model cannot take (e.g. --window past its limit)
        raise OrtpipeError(str(exc)) from exc
    return app, config


def _draining_server(uvicorn, app, args, config: ServeConfig):
    """uvicorn's server for ``app``, with guarded connections, draining on SIGTERM and SIGHUP re-reading."""
    from ortpipe.serve.app import start_draining
    from ortpipe.serve.connections import guarded_protocol

    def reread() -> None:
        loop = getattr(app.state, "loop", None)  # set once the app has started
        if loop is not None:
            loop.call_soon_threadsafe(lambda: loop.create_task(_reread_config(app, args, config)))

    class DrainingServer(uvicorn.Server):
        """On SIGTERM/SIGINT: refuse new work with 503 at once, let uvicorn finish what is in flight, exit 0.

        (uvicorn itself re-raises the signal once it has shut down, so the process would end with -15.)
        """

        def handle_exit(self, sig, frame) -> None:
            if not app.state.served.draining:
                print(f"ortpipe serve: signal {sig}: draining (refusing new requests, finishing those in flight, "
                      f"at most {config.drain_s:g} s)", file=sys.stderr, flush=True)
            start_draining(app)
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            if args.config:  # SIGHUP: read --config again and load, re-read or unload what changed
                originals[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: reread())
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    server = DrainingServer(uvicorn.Config(app.state.front, host=config.host, port=config.port, log_level="warning",
                                           timeout_graceful_shutdown=int(config.drain_s), access_log=False,
                                           http=guarded_protocol(config.head_timeout_s, config.max_connections)))
    if app.state.ortpipe.scheduler is not None:  # the server's only request starts at once (Scheduler.run_lone)
        app.state.ortpipe.scheduler.lone_request = lambda: len(server.server_state.tasks) <= 1
    return server
