"""The ``>>>`` examples in the synthetic package's docstrings run and pass."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["synthetic.upn", "synthetic.targets", "synthetic.model", "synthetic.load",
           "synthetic.keys", "synthetic.integrity",
           "synthetic.catalogue", "synthetic.schema", "safesetting.cli.data"]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted > 0
