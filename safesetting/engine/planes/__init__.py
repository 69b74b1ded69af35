"""Data planes: where the engine's compiled SQL runs and the aggregate vectors come from.

A plane runs the engine's own SQL (never a researcher's text) over the published snapshot
and returns the grouped aggregate rows, which stay inside the engine: ``noise.py`` turns
them into OpenDP's input and nothing row-level comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from safesetting.engine.compile import CompiledQuery


class DataPlane(Protocol):
    name: str

    def run(
        self,
        compiled: CompiledQuery,
        optout_ids: Sequence[int] = (),
        *,
        subject_ids: Sequence[int] | None = None,
        timeout_s: float | None = None,
    ) -> list[tuple]:
        """The compiled query's grouped rows, opted-out pupils left out (``subject_ids``:
        only those pupils' rows, for subject access)."""

    def close(self) -> None: ...
