"""Arrows point one way: no package imports one above it, and only ``ortpipe.cli`` dispatches to them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# what each package may import of the project's own packages (besides itself)
ALLOWED = {
    "runtime": set(),
    "export": {"runtime"},
    "serve": {"runtime"},
    "benchmarks": {"runtime", "export", "serve", "distributed"},  # it measures them all
    "distributed": {"runtime", "serve"},
    "cli": {"runtime", "export", "serve", "benchmarks", "distributed"},
}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found |= {name.split(".")[1] for name in names if name.startswith("ortpipe.") and name.count(".") >= 1}
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            name = str(node.args[0].value)  # a module imported by name counts too
            found |= {name.split(".")[1]} if name.startswith("ortpipe.") else set()
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_ones_below_it(package):
    for path in sorted((ROOT / package).glob("*.py")):
        above = _imported_packages(path) - ALLOWED[package] - {package}
        assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}, above {package}"
