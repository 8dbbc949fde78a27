"""mkdocs hook: the package tree as mkdocstrings reads it.

ortpipe installs its folders under other names (``runtime/`` is ``ortpipe.runtime``, see pyproject's
``package-dir``), which griffe's static reader cannot follow through an editable install. Before the build,
``build/docs-src/ortpipe/`` is made with one symlink per package, and mkdocstrings reads from there.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "build" / "docs-src"


def make_source_tree() -> None:
    """``build/docs-src/ortpipe/NAME`` → each package's folder (made when mkdocs loads this hook, before
    any plugin's ``on_config``: mkdocstrings reads its paths there)."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    target = SOURCE / "ortpipe"
    target.mkdir(parents=True, exist_ok=True)
    (target / "__init__.py").write_text('"""ortpipe (the docs build\'s view of the package tree)."""\n')
    for name, folder in packages.items():
        link = target / name.split(".", 1)[1]
        if not link.is_symlink():
            link.symlink_to(ROOT / folder, target_is_directory=True)


make_source_tree()
