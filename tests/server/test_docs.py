"""The README's "Running a safe setting" documents the server, every endpoint and the
error shape; the serve command has help."""

from __future__ import annotations

from pathlib import Path

from fastapi.routing import APIRoute

from safesetting.cli.serve import serve
from safesetting.server import router

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README.split("## Running a safe setting", 1)[1].split("\n## ", 1)[0]


def test_every_endpoint_is_documented():
    for route in router.routes:
        assert isinstance(route, APIRoute)
        assert f"`{next(iter(route.methods))} {route.path}" in SECTION, route.path


def test_serve_and_client_mode_are_shown():
    for text in ("safesetting serve", "SAFESETTING_URL", "SAFESETTING_TOKEN", '"error"',
                 "python bench/bench_server.py"):  # fmt: skip
        assert text in SECTION, text
    assert serve.help
    assert all(p.help for p in serve.params), "every serve option needs help"
