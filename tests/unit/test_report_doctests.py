"""The ``>>>`` examples in the demo, report, subject-access, transparency and CLI table
modules pass."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "safesetting.report.markup",
    "safesetting.report.charts",
    "safesetting.report.transparency_page",
    "safesetting.demo.truth",
    "safesetting.subject_access",
    "safesetting.transparency",
    "safesetting.cli.tables",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted > 0
