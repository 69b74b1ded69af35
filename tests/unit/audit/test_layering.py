"""Dependencies point one way: ``audit`` never imports ``safesetting``."""

from __future__ import annotations

import ast
from pathlib import Path

import audit

PACKAGE = Path(audit.__file__).parent


def test_audit_does_not_import_safesetting():
    offenders = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "safesetting"]
    assert offenders == []
    assert len(list(PACKAGE.glob("*.py"))) >= 7
