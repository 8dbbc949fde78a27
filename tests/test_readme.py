"""The README stays true: its links and pictures exist, its command lines parse with today's CLI."""

from __future__ import annotations

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
