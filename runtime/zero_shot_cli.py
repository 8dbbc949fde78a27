"""``ortpipe classify --candidate-labels …``: zero-shot classification with an NLI bundle, texts or ``--file``.

    ortpipe classify --bundle bundles/nli --candidate-labels "sports,politics,cinema" "The match went to penalties."
    ortpipe classify --bundle bundles/nli --candidate-labels sports,politics --multi-label --file news.csv --out z.csv
"""

from __future__ import annotations

import json
import sys

from ortpipe.runtime.errors import InputError
from ortpipe.runtime.zero_shot import DEFAULT_TEMPLATE, ZeroShotCall, ZeroShotOptions, pair_options

# classify's options that mean nothing to zero-shot: (argument name, flag)
NOT_WITH_LABELS = (("explain", "--explain"), ("explain_words", "--explain-words"), ("threshold", "--threshold"),
                   ("top_k", "--top-k"), ("all_labels", "--all-labels"), ("pair_column", "--pair-column"),
                   ("return_windows", "--return-windows"), ("raw_scores", "--raw-scores"))


def add_zero_shot_arguments(parser) -> None:
    """``--candidate-labels``, ``--hypothesis-template``, ``--multi-label``."""
    parser.add_argument("--candidate-labels", metavar="LABEL[,LABEL…]",
                        help="zero-shot with an NLI bundle: score each of these labels for each text (each text "
                             "× label pair is one model row); prints labels and scores, best first")
    parser.add_argument("--hypothesis-template", default=DEFAULT_TEMPLATE,
                        help=f"with --candidate-labels: the hypothesis, {{}} where the label goes "
                             f"(default {DEFAULT_TEMPLATE!r})")
    parser.add_argument("--multi-label", action="store_true",
                        help="with --candidate-labels: score each label on its own instead of the labels' scores "
                             "summing to 1")


def zero_shot_of(args) -> ZeroShotOptions | None:
    """The zero-shot options of a parsed command line (None without ``--candidate-labels``), checked."""
    if args.candidate_labels is None:
        if args.multi_label or args.hypothesis_template != DEFAULT_TEMPLATE:
            raise InputError("--multi-label and --hypothesis-template go with --candidate-labels")
        return None
    given = [flag for name, flag in NOT_WITH_LABELS if getattr(args, name, None) not in (None, False)]
    if given:
        raise InputError(f"{', '.join(given)}: not with --candidate-labels (zero-shot answers every label's score)")
    return ZeroShotOptions.parse(args.candidate_labels, args.hypothesis_template, args.multi_label)


def print_zero_shot(clf, texts: list[str], options: ZeroShotOptions, args, out=None) -> None:
    """One JSON line per text: ``{"text", "labels", "scores"}``, labels best first."""
    from ortpipe.runtime.zero_shot_classifier import ZeroShotClassifier

    call = pair_options(clf, batch_size=args.batch_size, window=args.window, stride=args.stride,
                        aggregate=args.aggregate)
    results = ZeroShotClassifier(clf).classify(texts, ZeroShotCall(call, options))
    for text, result in zip(texts, results):
        print(json.dumps({"text": text, "labels": result["labels"], "scores": result["scores"]},
                         ensure_ascii=False), file=out or sys.stdout)
