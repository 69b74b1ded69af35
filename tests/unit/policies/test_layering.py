"""Only ``load.py`` of ``policies`` touches files (import direction: tests/unit/test_layering)."""

from __future__ import annotations

from pathlib import Path

import policies
from tests.unit.test_layering import imports

PACKAGE = Path(policies.__file__).parent
IO_MODULES = {"os", "pathlib", "io", "shutil", "tomllib", "sqlite3", "sqlalchemy", "subprocess"}


def test_only_load_does_io():
    offenders = {
        p.name: sorted(imports(p) & IO_MODULES)
        for p in PACKAGE.glob("*.py")
        if p.name != "load.py" and imports(p) & IO_MODULES
    }
    assert offenders == {}
    source = "\n".join(p.read_text() for p in PACKAGE.glob("*.py") if p.name != "load.py")
    assert "open(" not in source
