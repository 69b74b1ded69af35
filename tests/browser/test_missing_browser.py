"""Without Chromium a laptop skips the browser tests with the install command; CI fails."""

from __future__ import annotations

import pytest

from tests.browser.conftest import require_browser


def test_a_laptop_without_chromium_skips_naming_the_install_command(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("SAFESETTING_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_browser()
    reason = str(skipped.value)
    assert "apt-get install chromium" in reason
    assert len(reason.splitlines()) == 1


def test_ci_without_chromium_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("SAFESETTING_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium.*CI installs it"):
        require_browser()
