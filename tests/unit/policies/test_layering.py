"""``policies`` never imports ``safesetting``, and only ``load.py`` touches files."""

from __future__ import annotations

import ast
from pathlib import Path

import policies

PACKAGE = Path(policies.__file__).parent
IO_MODULES = {"os", "pathlib", "io", "shutil", "tomllib", "sqlite3", "sqlalchemy", "subprocess"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_policies_do_not_import_safesetting():
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 6
    assert [p.name for p in modules if "safesetting" in _imports(p)] == []


def test_only_load_does_io():
    offenders = {
        p.name: sorted(_imports(p) & IO_MODULES)
        for p in PACKAGE.glob("*.py")
        if p.name != "load.py" and _imports(p) & IO_MODULES
    }
    assert offenders == {}
    source = "\n".join(p.read_text() for p in PACKAGE.glob("*.py") if p.name != "load.py")
    assert "open(" not in source
