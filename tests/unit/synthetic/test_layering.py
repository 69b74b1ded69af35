"""Dependencies point one way: ``synthetic`` knows nothing of policies, DP, audit or the service."""

from __future__ import annotations

import ast
from pathlib import Path

import synthetic

PACKAGE = Path(synthetic.__file__).parent
FORBIDDEN = {"safesetting", "policies", "audit", "opendp"}


def test_synthetic_imports_none_of_the_layers_above_it():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
    assert len(list(PACKAGE.rglob("*.py"))) >= 8
