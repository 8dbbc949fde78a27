"""The runtime never imports torch, transformers or optimum (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("torch", "transformers", "optimum")


def _run(code: str, bundle) -> dict:
    env = {**os.environ, "BUNDLE": str(bundle)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_classifying_imports_no_heavy_library(bert_bundle):
    result = _run(
        "import json, os, sys\n"
        "from ortpipe.runtime import TextClassifier\n"
        "clf = TextClassifier.load(os.environ['BUNDLE'])\n"
        "clf(['This course is amazing!', 'bad'], top_k=None)\n"
        "clf.predict(clf.postprocess(clf.infer(clf.tokenize('x'))))\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n", bert_bundle)
    assert result == []


def test_the_classify_command_imports_no_heavy_library(bert_bundle):
    result = _run(
        "import contextlib, io, json, os, sys\n"
        "from ortpipe.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['classify', '--bundle', os.environ['BUNDLE'], 'good', 'bad'])\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n", bert_bundle)
    assert result == []
