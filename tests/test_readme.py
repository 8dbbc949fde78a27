"""The README stays true: its links and pictures exist, its command lines parse with today's CLI, and its
Python blocks run and give the results they document."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

from ortpipe.runtime.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _command_lines() -> list[str]:
    """Every ``ortpipe …`` line of the README's bash blocks (comments cut, continuations joined),
    and every inline `ortpipe …` of its tables and prose."""
    lines = [line for line in re.findall(r"`ortpipe ([^`]+)`", README) if "[" not in line]  # not usage lines
    for block in _code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            for prefix in (".venv/bin/ortpipe ", "ortpipe "):
                if line.startswith(prefix):
                    lines.append(line[len(prefix):])
    return lines


def test_every_relative_link_and_picture_exists():
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    relative = [t for t in targets if not t.startswith(("http://", "https://", "#", "mailto:"))]
    assert relative, "the README links nothing of its own"
    missing = [t for t in relative if not (ROOT / t.split("#")[0]).exists()]
    assert missing == []


def test_every_anchor_link_names_a_heading():
    def slug(heading: str) -> str:
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    headings = {slug(h) for h in re.findall(r"^#+ (.+)$", README, flags=re.M)}
    anchors = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert anchors <= headings, anchors - headings


COMMANDS = _command_lines()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 8 and any(c.startswith("serve") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_documented_command_line_parses(command):
    args = build_parser().parse_args(shlex.split(command))
    assert callable(args.run)


def _statements(block: str):
    """Each top-level statement of a Python block, with the value its comment documents (or None).

    A comment documents a value when it starts (after an optional ``N: ``) with ``[``, ``{`` or ``(``;
    ``...`` in it stands for anything, as in ``0.99...``.
    """
    lines = block.splitlines()
    for node in ast.parse(block).body:
        comment = lines[node.end_lineno - 1].partition("  #")[2].strip()
        comment = re.sub(r"^\d+: ", "", comment)
        yield node, (comment if comment[:1] in ("[", "{", "(") else None)


PYTHON_BLOCKS = _code_blocks("python")


def test_the_readme_documents_results_in_its_python_blocks():
    documented = [expected for block in PYTHON_BLOCKS for _, expected in _statements(block) if expected]
    assert len(PYTHON_BLOCKS) >= 3 and len(documented) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_every_python_block_runs_and_gives_its_documented_results(index, default_bundle, tmp_path, monkeypatch):
    """Each block runs on its own, with the default bundle where it says ``load()`` and as ``bundles/my-model``."""
    _, bundle = default_bundle
    (tmp_path / "home" / "bundles").mkdir(parents=True)
    (tmp_path / "home" / "bundles" / "sst2-minilm").symlink_to(bundle)
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "my-model").symlink_to(bundle)
    monkeypatch.setenv("ORTPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for node, expected in _statements(PYTHON_BLOCKS[index]):
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), "README.md", "eval"), namespace)
        else:
            exec(compile(ast.Module([node], type_ignores=[]), "README.md", "exec"), namespace)
            value = namespace.get(node.targets[0].id) if isinstance(node, ast.Assign) else None
        if expected:
            pattern = re.escape(expected).replace(re.escape("..."), ".*?")
            assert re.fullmatch(pattern, repr(value)), (ast.unparse(node), expected, repr(value))
