"""Outcomes of one chunk of pupils: KS2, KS4, absence and exclusions.

Each function reads the chunk's pupil-level latents and pupil-year states (``_Chunk`` in
``generator``) and draws from the chunk's generator, in a fixed order, so the data stay
reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from synthetic import codes, model, schema
from synthetic.columns import arrow_table, dictionary, sample

if TYPE_CHECKING:
    from synthetic.generator import _Chunk

_F32 = np.float32


def _attainment_latent(
    c: _Chunk, nc: int, sel: np.ndarray, effects: dict[str, float]
) -> np.ndarray:
    """Latent attainment in NC year ``nc``: ability plus disadvantage, sex, SEN, EAL effects."""
    prov = c.sen[sel, nc]
    latent = (
        effects["ability"] * c.ability[sel]
        + effects["dis"] * c.ever6[sel, nc]
        + effects["female"] * ~c.male[sel]
        + effects["K"] * (prov == 1)
        + effects["E"] * (prov == 2)
        + effects["eal"] * c.eal[sel]
    )
    out: np.ndarray = latent.astype(_F32)
    return out


def ks2_table(c: _Chunk) -> pa.Table:
    """KS2 for pupils whose Year 6 falls in range; RWM = reading and maths >= 100, writing EXS+."""
    rng, years = c.rng, c.g.years
    year = c.reception + 6
    sel = np.flatnonzero((year >= years.first) & (year <= years.last))
    lat = _attainment_latent(c, 6, sel, {
        "ability": 1.0, "dis": model.KS2_DISADVANTAGED, "female": model.KS2_FEMALE,
        "K": model.KS2_SEN_SUPPORT, "E": model.KS2_EHC, "eal": model.KS2_EAL,
    })  # fmt: skip
    m = len(sel)
    noise = rng.standard_normal((4, m), dtype=_F32) * model.KS2_SUBJECT_NOISE
    scores = {}
    for i, subject in enumerate(("read", "maths", "gps")):
        raw = model.KS2_SCORE_CENTRE[subject] + model.KS2_SCORE_SCALE * (lat + noise[i])
        scores[subject] = np.clip(np.rint(raw), 80, 120).astype(np.int16)
    w = lat + noise[3]
    cuts = model.KS2_WRITING_CUTS
    writing = np.select([w > cuts[0], w > cuts[1], w > cuts[2], w > cuts[3]], [0, 1, 2, 3], 4)
    rwm = (scores["read"] >= 100) & (scores["maths"] >= 100) & (writing <= 1)
    return arrow_table("ks2", {
        "pupil_id": c.pupil_id[sel],
        "academic_year": year[sel].astype(np.int16),
        "read_score": scores["read"],
        "maths_score": scores["maths"],
        "gps_score": scores["gps"],
        "writing_ta": dictionary(writing, codes.WRITING_TA),
        "rwm_expected": rwm,
    })  # fmt: skip


def ks4_table(c: _Chunk) -> pa.Table:
    """KS4 for pupils whose Year 11 falls in range; English and maths grades follow A8."""
    rng, years = c.rng, c.g.years
    year = c.reception + 11
    sel = np.flatnonzero((year >= years.first) & (year <= years.last))
    lat = _attainment_latent(c, 11, sel, {
        "ability": model.KS4_ABILITY_LOADING, "dis": model.KS4_DISADVANTAGED,
        "female": model.KS4_FEMALE, "K": model.KS4_SEN_SUPPORT, "E": model.KS4_EHC,
        "eal": model.KS4_EAL,
    })  # fmt: skip
    m = len(sel)
    noise = rng.standard_normal((3, m), dtype=_F32)
    lat = lat + model.KS4_NOISE * noise[0]
    a8 = np.clip(np.rint((model.A8_CENTRE + model.A8_SCALE * lat) * 10) / 10, 0, 90)
    eng = np.clip(
        np.rint(a8 / 10 + model.ENGLISH_GRADE_OFFSET + model.GRADE_NOISE * noise[1]), 0, 9
    ).astype(np.int16)
    mat = np.clip(
        np.rint(a8 / 10 + model.MATHS_GRADE_OFFSET + model.GRADE_NOISE * noise[2]), 0, 9
    ).astype(np.int16)
    return arrow_table("ks4", {
        "pupil_id": c.pupil_id[sel],
        "academic_year": year[sel].astype(np.int16),
        "attainment8": a8.astype(np.float64),
        "english_grade": eng,
        "maths_grade": mat,
        "basics_grade4": (eng >= 4) & (mat >= 4),
        "basics_grade5": (eng >= 5) & (mat >= 5),
    })  # fmt: skip


def absence_table(c: _Chunk) -> pa.Table:
    """Absence for Years 1-11: a lognormal rate, persistent within a pupil, higher with FSM/SEN."""
    rng, r = c.rng, c.rows
    sel = np.flatnonzero(r.nc >= 1)  # compulsory school age: Years 1-11
    pupil = r.rep[sel]
    m = len(sel)
    lo, hi = model.FULL_YEAR_SESSIONS
    possible = rng.integers(lo, hi + 1, m)
    movers = rng.random(m) < model.MOVER_SHARE
    possible = np.where(movers, rng.integers(40, lo, m), possible)
    p = model.ABSENCE_PERSISTENCE
    z = p * c.u_abs[pupil] + np.sqrt(1 - p * p) * rng.standard_normal(m, dtype=_F32)
    prov = r.sen[sel]
    log_rate = (
        model.ABSENCE_LOG_MEAN
        + model.ABSENCE_LOG_SD * z
        + model.ABSENCE_FSM * r.fsm[sel]
        + model.ABSENCE_SEN_SUPPORT * (prov == 1)
        + model.ABSENCE_EHC * (prov == 2)
        + model.ABSENCE_SECONDARY * (r.nc[sel] >= 7)
    )
    rate = np.minimum(np.exp(log_rate), 0.95)
    absent = np.rint(rate * possible).astype(np.int64)
    a, b = model.UNAUTHORISED_SHARE
    share = rng.beta(a, b, m) * np.where(r.fsm[sel], model.UNAUTHORISED_FSM_BOOST, 1.0)
    unauth = np.rint(absent * np.minimum(share, 1.0)).astype(np.int64)
    return arrow_table("absence", {
        "pupil_id": c.pupil_id[pupil],
        "academic_year": r.year[sel].astype(np.int16),
        "sessions_possible": possible.astype(np.int16),
        "sessions_authorised": (absent - unauth).astype(np.int16),
        "sessions_unauthorised": unauth.astype(np.int16),
        "persistent_absentee": absent * 10 >= possible,
    })  # fmt: skip


def exclusions_table(c: _Chunk) -> pa.Table:
    """Suspensions (Poisson with a pupil frailty, capped per year) and permanent exclusions."""
    rng, r = c.rng, c.rows
    rows = len(r.rep)
    log_lambda = (
        model.SUSPENSION_LOG_MEAN
        + model.SUSPENSION_FRAILTY_SD * c.frailty[r.rep]
        + model.SUSPENSION_SECONDARY * (r.nc >= 7)
        + model.SUSPENSION_FSM * r.fsm
        + model.SUSPENSION_SEN * (r.sen > 0)
        + model.SUSPENSION_MALE * c.male[r.rep]
    )
    lam = np.exp(log_lambda)
    cap = schema.MAX_EXCLUSIONS_PER_YEAR
    suspensions = np.minimum(rng.poisson(lam), cap)
    permanent = rng.random(rows) < np.minimum(lam * model.PERMANENT_PER_SUSPENSION, 0.5)
    # a permanent exclusion is the pupil's last exclusion of the year
    suspensions = np.minimum(suspensions, cap - permanent)
    k = suspensions + permanent
    row = np.repeat(np.arange(rows), k)
    seq = np.arange(len(row)) - np.repeat(np.cumsum(k) - k, k) + 1
    is_perm = permanent[row] & (seq == k[row])
    m = len(row)
    reason = np.where(is_perm, sample(rng, c.g._reason_p, m), sample(rng, c.g._reason_s, m))
    sessions = np.where(
        is_perm,
        rng.integers(*model.PERMANENT_SESSIONS, m),
        np.minimum(
            2 * rng.geometric(model.SUSPENSION_DAYS_P, m) - (rng.random(m) < model.HALF_DAY_SHARE),
            90,
        ),
    )
    return arrow_table("exclusions", {
        "pupil_id": c.pupil_id[r.rep[row]],
        "academic_year": r.year[row].astype(np.int16),
        "exclusion_seq": seq.astype(np.int16),
        "category": dictionary(is_perm.astype(np.int8), codes.EXCLUSION_CATEGORIES),
        "reason": dictionary(reason, codes.EXCLUSION_REASONS),
        "sessions": np.maximum(sessions, 1).astype(np.int16),
    })  # fmt: skip
