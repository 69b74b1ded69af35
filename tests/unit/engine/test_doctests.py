"""The ``>>>`` examples in the engine's and service's docstrings run and pass."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["safesetting.engine.parse", "safesetting.engine.compile", "safesetting.engine.noise",
           "safesetting.engine.output", "safesetting.engine.bounds", "safesetting.engine.joins",
           "safesetting.engine.types", "safesetting.engine.plan", "safesetting.engine.mechanisms",
           "safesetting.errors"]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted > 0
