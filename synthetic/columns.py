"""Small helpers that turn numpy draws into Arrow columns and tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from synthetic import schema


def dictionary(
    indices: np.ndarray, values: tuple[str, ...] | pa.Array, mask: np.ndarray | None = None
) -> pa.Array:
    """A dictionary-encoded string column (DuckDB reads it as VARCHAR without copying)."""
    words = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    idx = pa.array(indices.astype(np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(idx, words)


def sample(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """n draws from one categorical distribution."""
    cum = np.cumsum(probs / probs.sum())
    return np.minimum(np.searchsorted(cum, rng.random(n)), len(probs) - 1)


def sample_rows(
    rng: np.random.Generator, cum_by_group: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """One draw per row from the categorical distribution of the row's group."""
    u = rng.random(len(group))[:, None]
    drawn: np.ndarray = (u > cum_by_group[group]).sum(axis=1)
    return drawn


def arrow_table(name: str, columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    """An Arrow table for schema table ``name``; its columns must be the declared ones, in order."""
    expected = schema.table(name).column_names
    if tuple(columns) != expected:
        raise ValueError(f"{name}: columns {tuple(columns)} are not the declared {expected}")
    return pa.table(columns)
