"""How a bundle is loaded, as one frozen object kept on the classifier: a reload loads "as before".

    clf = TextClassifier.load("bundles/a", variant="int8", threads=2)
    again = TextClassifier.load("bundles/a-v2", **clf.load_options.as_kwargs())   # the same way
    one_thread = clf.load_options.but(threads=1)                                  # one field changed
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class LoadOptions:
    """``TextClassifier.load``'s arguments but the path, as they were asked for (``variant=None``: load() chose)."""

    variant: str | None = None
    provider: str = "auto"
    threads: int | None = None
    verify: bool = True
    spinning: bool = True
    memory: str | None = None
    shared_threads: bool = False
    backend: str | None = None
    workload: str | None = None

    def as_kwargs(self) -> dict:
        """The keyword arguments of ``TextClassifier.load``."""
        return asdict(self)

    def but(self, **changes) -> "LoadOptions":
        """A copy with ``changes``."""
        return replace(self, **changes)


def add_backend_options(parser) -> None:
    """``--backend`` and ``--workload``: the engine, or the variant and engine measured fastest here."""
    parser.add_argument("--backend", choices=("onnxruntime", "openvino"),
                        help="the engine (default onnxruntime; openvino needs ortpipe[openvino] and runs the "
                             "static-int8, optimized and fp32 files)")
    parser.add_argument("--workload", choices=("single", "bulk"),
                        help="load the variant and engine measured fastest on this machine for one text per call "
                             "or for many (measured once, then cached; see `ortpipe doctor`). Without it, dynamic "
                             "int8 runs one text per call unless --batch-size is given: its scores move with its "
                             "batch neighbours, static-int8's do not")
