"""OpenDP's mechanisms, calibrated: the only place noise is made.

Every scale is found with ``binary_search_param`` so the measurement's privacy map at the
given sensitivity is at most its share of ε, and the map is checked again before each use
(``check_map`` raises ``PrivacyError``; a real check, not an assert). Counts and sums use the
discrete Laplace mechanism on an integer vector; quantiles OpenDP's exponential-mechanism
quantile over public candidates. Nothing here knows a plan or an aggregate kind:
``measures.py`` decides what each aggregate feeds in.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import opendp.prelude as dp

from safesetting.errors import SafeSettingError

dp.enable_features("contrib")

ALPHA = 0.05  # error bounds are 95 % half-widths
MICRO = 1_000_000
MAX_QUANTILE_CANDIDATES = 201
QUANTILE_MARGIN = 1e-9  # relative: covers float rounding when per-group losses are summed

_COUNT_SPACE = (dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"))

CalibrationError = dp.OpenDPException  # an ε too small to calibrate at this sensitivity


class PrivacyError(SafeSettingError):
    """A measurement's privacy map exceeds its share of ε: never released (an incident)."""


def check_map(loss: float, epsilon: float) -> None:
    """The calibration guarantee, checked on every release (a real check, not an assert:
    it must hold under ``python -O`` too)."""
    if not loss <= epsilon:
        raise PrivacyError("a measurement's privacy loss exceeds its share of epsilon")


@lru_cache(maxsize=4096)
def laplace_scale(d_in: int, epsilon: float) -> float:
    """The discrete Laplace scale whose privacy map at ``d_in`` is at most ``epsilon``."""
    return float(
        dp.binary_search_param(
            lambda s: dp.m.make_laplace(*_COUNT_SPACE, scale=s), d_in=d_in, d_out=epsilon
        )
    )


def laplace_half_width(scale: float) -> float:
    """The 95 % half-width of discrete Laplace noise at ``scale``, rounded up."""
    return round_up(dp.discrete_laplacian_scale_to_accuracy(scale, ALPHA))


def laplace(values: np.ndarray, d_in: int, epsilon: float) -> tuple[np.ndarray, float, float]:
    """Noisy integer vector, its 95 % half-width and the scale."""
    scale = laplace_scale(d_in, epsilon)
    meas = dp.m.make_laplace(*_COUNT_SPACE, scale=scale)
    check_map(meas.map(d_in), epsilon)
    noisy = np.asarray(meas(values.astype(np.int64)), dtype=np.int64)
    return noisy, laplace_half_width(scale), scale


def candidates(lower: float, upper: float, resolution: float) -> list[float]:
    """The values a quantile may be released as: the public grid of its bounds (whole
    numbers, or halves for real values), at most 201 of them.

    >>> candidates(80, 84, 1.0)
    [80.0, 81.0, 82.0, 83.0, 84.0]
    >>> candidates(0, 1.5, 0.01)
    [0.0, 0.5, 1.0, 1.5]
    """
    step = 1.0 if resolution >= 1 else 0.5
    n = int((upper - lower) / step) + 1
    if n > MAX_QUANTILE_CANDIDATES:
        return [float(x) for x in np.linspace(lower, upper, MAX_QUANTILE_CANDIDATES)]
    return [lower + i * step for i in range(n)]


@lru_cache(maxsize=1024)
def quantile_meas(cands: tuple[float, ...], q: float, d_in: int, epsilon: float):
    """OpenDP's exponential-mechanism quantile over ``cands``, calibrated at ``d_in`` in
    symmetric distance; returns the measurement and its scale."""
    dom = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    met = dp.symmetric_distance()

    def make(s: float):
        return dp.m.make_private_quantile(
            dom, met, dp.max_divergence(), candidates=list(cands), alpha=q, scale=s
        )

    target = epsilon * (1 - QUANTILE_MARGIN)
    scale = dp.binary_search_param(make, d_in=d_in, d_out=target)
    meas = make(scale)
    check_map(meas.map(d_in), target)
    return meas, float(scale)


def quantile_rank_error(scale: float, n_candidates: int) -> int:
    """Selection error of the exponential mechanism at 95 %: with probability at least
    1 - α the chosen candidate's score is within ``scale · ln(|C| / α)`` of the best, and a
    score unit here is one record's worth of rank.

    >>> quantile_rank_error(2.0, 91)
    16
    """
    return math.ceil(scale * math.log(n_candidates / ALPHA))


def round_up(x: float) -> float:
    """Error bounds round up (to 3 significant figures), never down.

    >>> round_up(18.4213), round_up(0.026101), round_up(0.0)
    (18.5, 0.0262, 0.0)
    """
    if x <= 0:
        return 0.0
    digits = 2 - int(math.floor(math.log10(x)))
    factor = 10**digits
    return math.ceil(x * factor) / factor
