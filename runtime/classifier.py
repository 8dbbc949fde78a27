"""``TextClassifier``: the four stages behind a ``transformers.pipeline`` interface.

    from ortpipe.runtime import TextClassifier

    clf = TextClassifier.load()                    # the default bundle
    clf("This course is amazing!")                 # [{'label': 'POSITIVE', 'score': 0.99...}]

Each stage is a public method (``tokenize``, ``infer``, ``postprocess``,
``predict``); ``__call__`` chains them through the one batching loop.
A classifier holds no per-call state, so threads may share one.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ortpipe.runtime.batching import CPU_CALL_COST_TOKENS, run_in_batches
from ortpipe.runtime.backends import make_model
from ortpipe.runtime.bundle import Bundle
from ortpipe.runtime.calibration import Calibration
from ortpipe.runtime.call import UNSET, CallOptions, Plan, plan_rows
from ortpipe.runtime.check import check_variant
from ortpipe.runtime.errors import BundleError, InputError
from ortpipe.runtime.inputs import normalize_inputs
from ortpipe.runtime.load_options import LoadOptions
from ortpipe.runtime.loading import load_classifier
from ortpipe.runtime.manifest import Manifest
from ortpipe.runtime.memory import MemoryInfo
from ortpipe.runtime.probes import ProbeReport
from ortpipe.runtime.predict import top_labels
from ortpipe.runtime.tokenize import Encoded, TextInput, TextTokenizer
from ortpipe.runtime.windows import WindowOptions, window_options

DEFAULT_BATCH_SIZE = 32


class TextClassifier:
    """A text classifier served from an ortpipe bundle by ONNX Runtime.

    Build one with ``TextClassifier.load``. Attributes: ``provider`` (``"cpu"`` or
    ``"cuda"``, the one really active), ``variant``, ``labels``, ``manifest``,
    and ``rejected``: the probe report of a default variant that failed on
    this machine and was replaced (None otherwise).
    """

    rejected: ProbeReport | None = None
    choice = None  # with load(workload=...): the FastestChoice measured here (what was timed, and why)
    calibration: Calibration | None = None  # the variant's fitted temperature and threshold (None: raw scores)
    load_options: LoadOptions = LoadOptions()  # how load() was asked to load it (a reload loads "as before")

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: int | None = None, spinning: bool = True,
                 memory: str | None = None, shared_threads: bool = False, backend: str = "onnxruntime"):
        self.bundle = bundle
        self.manifest: Manifest = bundle.manifest
        self.labels = self.manifest.labels
        self.tokenizer = TextTokenizer(bundle.tokenizer_path, self.manifest.max_length,
                                       self.manifest.pad_token_id)
        self.model = make_model(backend, bundle.model_path, provider=provider, threads=threads, spinning=spinning,
                                memory=memory, shared_threads=shared_threads)
        width = self.model.output_width
        if width is not None and width != len(self.labels):
            raise BundleError(f"bundle {bundle.path}: the manifest names {len(self.labels)} label(s) in id2label, "
                              f"but {bundle.model_path.name} gives {width} logits per text; the manifest does not "
                              "belong to this model")
        self.provider = self.model.provider
        self.calibration = Calibration.from_record(bundle.variant.calibration, len(self.labels),
                                                   f"{bundle.path}: variant {bundle.variant.name!r}")
        self._truncated = 0
        self._truncated_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None = None, variant: str | None = None, provider: str = "auto",
             threads: int | None = None, verify: bool = True, spinning: bool = True,
             memory: str | None = None, shared_threads: bool = False, backend: str | None = None,
             workload: str | None = None) -> "TextClassifier":
        """Open a bundle and start an ONNX Runtime (or OpenVINO) session on it.

        Args:
            path: bundle folder; None for the default bundle (``ortpipe export``).
            variant: ``fp32``, ``optimized``, ``int8`` or ``fp16``; None for the
                manifest's default (the fastest one validated at export), kept
                only if it passes its probe check on this machine when it is
                quantized; else the best float variant, with a warning. Where
                CUDA is active, None means ``fp16`` once it passes its probe
                check on that device, else the best float variant.
            provider: ``"auto"`` (CUDA if it really activates, else CPU),
                ``"cpu"`` or ``"cuda"`` (an error if CUDA cannot be activated).
            threads: ONNX Runtime intra-op threads; None lets it decide.
            verify: check the files' sha256 against the manifest.
            spinning: let idle ONNX Runtime threads busy-wait between calls (fastest in a loop of
                calls; ``ortpipe serve`` turns it off to leave the cores to the event loop).
            memory: ``"lean"`` (default: CPU model calls of at most 512 padded tokens, and the arena gives
                back what a larger batch took) or ``"fast"`` (ONNX Runtime's arena); see :mod:`.memory`.
            shared_threads: run on ONNX Runtime's process-wide thread pool, shared by every classifier
                loaded so (sized by :func:`~ortpipe.runtime.inference.use_shared_threads`, or ``threads``).
            backend: ``"onnxruntime"`` (None: the default) or ``"openvino"`` (``pip install 'ortpipe[openvino]'``;
                it runs the ``static-int8``, ``optimized`` and ``fp32`` files, on the CPU); see :mod:`.backends`.
            workload: ``"single"`` (one text per call) or ``"bulk"`` (many texts per call): the variant and
                backend measured fastest for it on this machine, among those installed that pass their probe
                check here (measured once per machine and bundle, then cached; see :mod:`.fastest`).

        Raises:
            BundleError, IntegrityError, ProviderError: see :mod:`ortpipe.runtime.errors`.
        """
        asked = LoadOptions(variant, provider, threads, verify, spinning, memory, shared_threads, backend, workload)
        clf = load_classifier(cls, path, asked)
        clf.load_options = asked
        return clf

    def check(self, refresh: bool = False) -> ProbeReport:
        """The :class:`~ortpipe.runtime.probes.ProbeReport` of this variant's probe texts, here, against the fp32
        reference (cached per bundle and machine under ``$ORTPIPE_HOME/checks``; ``refresh`` reruns it)."""
        return check_variant(self.bundle, self.model, self.tokenizer, refresh=refresh)

    @property
    def variant(self) -> str:
        return self.bundle.variant.name

    @property
    def memory(self) -> MemoryInfo:
        """The ONNX Runtime memory setting in force (``memory=`` of :meth:`load`)."""
        return self.model.memory

    @property
    def batch_invariant(self) -> bool:
        """Whether a text's scores are the same alone and in any batch.

        True for float variants (padding is masked exactly). False for dynamic
        int8: its activation scales are computed over the whole batch, so a
        text's scores move slightly (about 1e-3) with its batch neighbours.
        """
        return self.bundle.variant.details.get("method") != "dynamic"

    def default_batch_size(self) -> int:
        """Texts per ONNX Runtime call when ``batch_size`` is not given.

        32 where batching cannot change results; 1 for dynamic int8, so that by
        default every text gets the same scores whatever else is in the call.
        """
        return DEFAULT_BATCH_SIZE if self.batch_invariant else 1

    @property
    def call_cost_tokens(self) -> int | None:
        """What one model call costs beyond its padded tokens, in tokens, for the planner's cuts
        (:func:`~ortpipe.runtime.batching.plan_batches`); None on a GPU, whose calls are best kept full."""
        return CPU_CALL_COST_TOKENS if self.provider == "cpu" else None

    @property
    def truncated_texts(self) -> int:
        """Texts this classifier cut to the model's limit so far (windows off, ``truncation=True``)."""
        return self._truncated

    def window_options(self, window: Any = None, stride: Any = None, aggregate: Any = None,
                       return_windows: Any = False, truncation: bool = True) -> WindowOptions | None:
        """The checked window settings of a call (None: windows off); see :func:`.windows.window_options`."""
        return window_options(window, stride, aggregate, return_windows, max_length=self.manifest.max_length,
                              recommended=self.manifest.window, special_tokens=self.tokenizer.special_tokens,
                              truncation=truncation)

    @property
    def backend(self) -> str:
        """The engine that runs the model: ``"onnxruntime"`` or ``"openvino"``."""
        return self.model.backend

    def __repr__(self) -> str:
        backend = "" if self.backend == "onnxruntime" else f", backend={self.backend!r}"
        return (f"TextClassifier(bundle={str(self.bundle.path)!r}, variant={self.variant!r}, "
                f"provider={self.provider!r}{backend}, labels={self.labels!r})")

    def tokenize(self, texts: str | Sequence[TextInput] | dict, truncation: bool = True) -> Encoded:
        """Stage 1: texts → padded numpy ``input_ids``, ``attention_mask``, ``token_type_ids``."""
        items = normalize_inputs(texts).items
        if not items:
            raise InputError("no texts given: pass a str or a non-empty list of texts")
        return self.tokenizer(items, truncation)

    def infer(self, encoded: Encoded) -> np.ndarray:
        """Stage 2: model inputs → logits, shape ``(batch, num_labels)``."""
        return self.model(encoded)

    def postprocess(self, logits: np.ndarray, function_to_apply: str | None = None, calibrated: bool = True):
        """Stage 3: logits → scores (softmax; sigmoid for multi-label; or none), calibrated when it can be."""
        options = CallOptions.parse(self, function_to_apply=function_to_apply, calibrated=calibrated)
        return Plan([], options).scores(np.asarray(logits, dtype=np.float32))

    def predict(self, scores: np.ndarray, top_k: int | None = 1) -> list[list[dict]]:
        """Stage 4: scores → the ``top_k`` best ``{'label', 'score'}`` per text (None: all)."""
        return top_labels(np.asarray(scores), self.labels, top_k)

    def __call__(self, inputs: str | dict | Sequence[str | dict], top_k: int | None = UNSET,
                 function_to_apply: str | None = None, batch_size: int | None = None,
                 truncation: bool = True, sort_by_length: bool = True, max_batch_tokens: int | None = UNSET,
                 window: int | str | None = None, stride: int | None = None, aggregate: str | None = None,
                 return_windows: bool = False, calibrated: bool = True, threshold: Any = None,
                 explain: bool = False) -> list:
        """Classify texts; arguments and output shapes follow ``transformers.pipeline``.

        Args:
            inputs: a str, a ``{"text", "text_pair"}`` dict, or a list of them.
            top_k: leave unset for one ``{'label', 'score'}`` per text; an int
                for that many labels per text, best first; None for all labels.
            function_to_apply: ``"default"``, ``"softmax"``, ``"sigmoid"`` or ``"none"``.
            batch_size: texts per ONNX Runtime call at most; None for :meth:`default_batch_size`
                (32, or 1 for dynamic int8 whose scores depend on batch neighbours). On a CPU with
                ``memory="lean"`` a batch of mixed lengths is cut where a call costs less than its
                padding (:func:`~ortpipe.runtime.batching.plan_batches`); ``"fast"`` keeps it whole.
            truncation: cut texts to the model's limit (else longer ones are an error).
            sort_by_length: batch texts of similar length together (results keep input order).
            max_batch_tokens: padded tokens (rows × longest row) per ONNX Runtime call at
                most; unset: 512 with ``memory="lean"`` (what bounds the working memory),
                none with ``"fast"``; None: no cap.
            window: None (default) reads the first ``max_length`` tokens, as the pipeline does;
                an int (tokens per window, special tokens included) or ``"auto"`` (the bundle's
                recommended window) classifies each text whole through overlapping windows.
            stride: tokens shared by consecutive windows (default: a quarter of the window).
            aggregate: how window logits become one answer: ``"mean"`` (default), ``"max"``, ``"first"``.
            return_windows: add each window's character span, label and score to each text's result.
            calibrated: divide the logits by the bundle's fitted temperature before the function, when the
                variant has one (:attr:`calibration`); False for the raw scores.
            threshold: a number in [0, 1], a ``{label: number}`` mapping, or ``"auto"`` (the bundle's, for its
                target precision): a single-label text whose top score is below it gets ``label`` None;
                a multi-label text gets a list of every label at or above its threshold.
            explain: add to each returned label an ``explanation``: the words in text order as
                ``{'word', 'start', 'end', 'weight'}``, the weight being how much the label's score drops
                without the word (one more model row per word; see :mod:`.explain`).

        Returns:
            As the pipeline: ``[{'label', 'score'}]`` for a str; a dict for one
            text pair; one entry per text for a list. With ``top_k`` set, each
            entry is a list of dicts. With ``return_windows``, each entry is
            ``{'label', 'score', 'windows': [...]}`` (``{'labels': [...], 'windows'}``
            with ``top_k``), a window being ``{'start', 'end', 'label', 'score'}``.
        """
        given = normalize_inputs(inputs)
        options = CallOptions.parse(self, top_k=top_k, function_to_apply=function_to_apply, batch_size=batch_size,
                                    truncation=truncation, sort_by_length=sort_by_length,
                                    max_batch_tokens=max_batch_tokens, window=window, stride=stride,
                                    aggregate=aggregate, return_windows=return_windows, calibrated=calibrated,
                                    threshold=threshold, explain=explain)
        if not given.items:
            return []
        results = self.classify(given.items, options)
        if given.single:
            return [results[0]] if given.single_str and options.one_label else results[0]
        return results

    def classify(self, items: list, options: CallOptions) -> list:
        """Per-text results of normalized ``items`` with checked ``options``: the in-process executor.

        The rows of :func:`~ortpipe.runtime.call.plan_rows` through the one batching loop, then
        :meth:`~ortpipe.runtime.call.Plan.finish`; what ``__call__``, files and Ray Data run.
        """
        plan = plan_rows(self.tokenizer, items, options)
        return plan.finish(self.run(plan), self.labels)

    def run(self, plan: Plan) -> np.ndarray:
        """The logits of a plan's rows (any :class:`~ortpipe.runtime.call.Plan`, or a zero-shot one), through
        the one batching loop with the plan's options."""
        options = plan.options
        if plan.truncated:
            with self._truncated_lock:
                self._truncated += plan.truncated
        rows = run_in_batches(plan.rows, plan.lengths, options.batch_size or self.default_batch_size(),
                              lambda batch: list(self._logits(batch)), options.sort_by_length, options.max_batch_tokens,
                              None if self.memory.fast else self.call_cost_tokens)  # fast: batches whole
        return np.stack(rows)

    def _logits(self, batch: list) -> np.ndarray:
        """Stages 1b and 2 for one batch of encodings (or windows): collate, run."""
        return self.model(self.tokenizer.collate(batch))
