"""Safe Setting: researchers come to the data; answers leave, rows never do."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``from safesetting import connect`` (the workbench), imported only when asked for."""
    if name == "connect":
        from safesetting.workbench import connect

        return connect
    raise AttributeError(f"module 'safesetting' has no attribute {name!r}")
