"""Dependencies point one way (DESIGN.md §3): ``safesetting`` → ``policies``, ``audit``,
``synthetic``; those three never import ``safesetting``, and ``synthetic`` knows nothing of
policy, audit or differential privacy."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

RULES = {
    "policies": ({"safesetting"}, 6),
    "audit": ({"safesetting"}, 7),
    "synthetic": ({"safesetting", "policies", "audit", "opendp"}, 8),
}


def imports(path: Path) -> set[str]:
    """Top-level names a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_nothing_above_it(package):
    forbidden, at_least = RULES[package]
    root = Path(importlib.import_module(package).__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) >= at_least  # the rule is checked against the real package
    offenders = {p.name: sorted(imports(p) & forbidden) for p in modules if imports(p) & forbidden}
    assert offenders == {}
