"""Vectorised, seeded generation of NPD-shaped pupil records as Arrow tables.

Pupils belong to birth cohorts and move through Reception..Year 11 across the academic
years generated: one census row per year in school, KS2 in the Year 6 year, KS4 in the
Year 11 year, a primary school then a secondary at phase transfer (special-school pupils
stay in theirs). Every pupil-level and pupil-year quantity is drawn with numpy from one
``np.random.Generator`` per chunk of pupils, so the same seed gives the same data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from synthetic import codes, model, schema, targets
from synthetic.reference import (
    PHASE_PRIMARY,
    PHASE_SECONDARY,
    PHASE_SPECIAL,
    build_geography,
    build_pools,
    build_schools,
    make_faker,
    pick_schools,
)
from synthetic.upn import upn_digits, upn_strings

CHUNK_PUPILS = 200_000  # fixed: the data depend on it, so it is part of the generator
SCHOOL_YEARS = 12  # Reception (0) .. Year 11
_F32 = np.float32


def _dict(indices: np.ndarray, values: tuple[str, ...] | pa.Array, mask=None) -> pa.Array:
    """A dictionary-encoded string column (DuckDB reads it as VARCHAR without copying)."""
    dictionary = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    idx = pa.array(indices.astype(np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(idx, dictionary)


def _sample(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """n draws from one categorical distribution."""
    cum = np.cumsum(probs / probs.sum())
    return np.minimum(np.searchsorted(cum, rng.random(n)), len(probs) - 1)


def _sample_rows(rng: np.random.Generator, cum_by_group: np.ndarray, group: np.ndarray):
    """One draw per row from the categorical distribution of the row's group."""
    u = rng.random(len(group))[:, None]
    return (u > cum_by_group[group]).sum(axis=1)


def _table(name: str, columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    expected = schema.table(name).column_names
    assert tuple(columns) == expected, (name, tuple(columns), expected)
    return pa.table(columns)


@dataclass(frozen=True)
class YearRange:
    """Academic years generated (each the calendar year in which it ends)."""

    first: int
    last: int

    @property
    def first_cohort(self) -> int:
        """Reception year of the oldest cohort seen (in Year 11 in the first year)."""
        return self.first - (SCHOOL_YEARS - 1)

    @property
    def n_cohorts(self) -> int:
        return self.last - self.first_cohort + 1


class Generator:
    """Generates one dataset: reference tables, then pupils in fixed-size chunks."""

    def __init__(self, pupils: int, seed: int, years: YearRange) -> None:
        self.pupils, self.seed, self.years = pupils, seed, years
        ref_seq, self._chunk_seq = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(ref_seq)
        fake = make_faker(seed)
        self.geo = build_geography()
        self.schools = build_schools(self.geo, pupils, years.n_cohorts, rng, fake)
        self.pools = build_pools(fake)
        self._upn_serials = np.zeros(len(self.schools.urn) * years.n_cohorts, dtype=np.int64)
        self._prepare_distributions()

    @property
    def n_chunks(self) -> int:
        return -(-self.pupils // CHUNK_PUPILS)

    def _prepare_distributions(self) -> None:
        geo = self.geo
        self._la_cum = np.cumsum(geo.share)
        self._fsm_threshold = np.array([model.upper_threshold(r) for r in geo.fsm_rate], _F32)
        minor = codes.ETHNICITY_MINOR
        other = np.array([model.ETHNICITY_OTHER_MIX.get(c, 0.0) for c in minor])
        rows = []
        for rname in codes.REGION_NAMES:
            wbri = targets.REGION_WHITE_BRITISH[rname]
            p = other / other.sum() * (1 - wbri)
            p[minor.index("WBRI")] = wbri
            rows.append(np.cumsum(p))
        self._eth_cum = np.array(rows)
        self._eth_major = np.array(
            [codes.ETHNICITY_MAJOR.index(codes.ETHNICITY_MINOR_TO_MAJOR[c]) for c in minor]
        )
        self._eal_p = np.array([model.EAL_BY_ETHNICITY[c] for c in minor])
        sexes = ("F", "M")
        self._t_ehc = np.array([model.upper_threshold(model.EHC_RATE[s]) for s in sexes], _F32)
        self._t_sen = np.array(
            [model.upper_threshold(model.EHC_RATE[s] + model.SEN_SUPPORT_RATE[s]) for s in sexes],
            _F32,
        )
        self._t_special = np.array(
            [model.upper_threshold(model.SPECIAL_SCHOOL_RATE[s]) for s in sexes], _F32
        )
        need = codes.SEN_PRIMARY_NEED
        self._need_k = np.array([model.NEED_SUPPORT[c] for c in need])
        self._need_e = np.array([model.NEED_EHC[c] for c in need])
        reasons = codes.EXCLUSION_REASONS
        self._reason_s = np.array([model.SUSPENSION_REASONS.get(c, 0.0) for c in reasons])
        self._reason_p = np.array([model.PERMANENT_REASONS.get(c, 0.0) for c in reasons])

    # ------------------------------------------------------------------ reference tables
    def reference_tables(self) -> dict[str, pa.Table]:
        geo, sch = self.geo, self.schools
        la = _table("local_authorities", {
            "la_code": pa.array(geo.la_codes.tolist()),
            "la_name": pa.array(list(geo.la_names)),
            "region": _dict(geo.region, codes.REGION_NAMES),
        })  # fmt: skip
        schools = _table("schools", {
            "urn": sch.urn.astype(np.int32),
            "school_name": pa.array(sch.name),
            "la_code": _dict(sch.la, codes.LA_CODES),
            "phase": _dict(sch.phase, codes.PHASES),
            "school_type": pa.array(sch.school_type),
        })  # fmt: skip
        return {"local_authorities": la, "schools": schools}

    # ------------------------------------------------------------------ pupils, in chunks
    def chunks(self) -> Iterator[dict[str, pa.Table]]:
        """Every private table for consecutive chunks of pupils, in load order."""
        for k in range(self.n_chunks):
            start = k * CHUNK_PUPILS
            n = min(CHUNK_PUPILS, self.pupils - start)
            seq = np.random.SeedSequence(self.seed, spawn_key=(1, k))
            yield _Chunk(self, np.random.default_rng(seq), start, n).tables()


class _Chunk:
    """One chunk of pupils and all their rows."""

    def __init__(self, gen: Generator, rng: np.random.Generator, start: int, n: int) -> None:
        self.g, self.rng, self.n = gen, rng, n
        self.pupil_id = np.arange(start + 1, start + n + 1, dtype=np.int64)
        years = gen.years
        self.cohort = rng.integers(0, years.n_cohorts, n)
        self.reception = years.first_cohort + self.cohort  # academic year in Reception
        self.male = rng.random(n) < model.MALE_SHARE
        self.la = np.minimum(np.searchsorted(gen._la_cum, rng.random(n)), len(gen._la_cum) - 1)
        self.region = gen.geo.region[self.la]
        self.eth = _sample_rows(rng, gen._eth_cum, self.region)
        lang_u = rng.random(n)
        self.eal = lang_u < gen._eal_p[self.eth]
        self.lang = np.where(rng.random(n) < model.LANGUAGE_UNCLASSIFIED, 2, self.eal.astype(int))
        z = rng.standard_normal((5, n), dtype=_F32)
        self.u_fsm, sen_z, self.ability, self.u_abs, self.frailty = z
        self.u_sen = (
            model.SEN_FSM_LOADING * self.u_fsm
            + np.sqrt(1 - model.SEN_FSM_LOADING**2, dtype=_F32) * sen_z
        )
        self._yearly_states()
        self._schools()

    def _yearly_states(self) -> None:
        g, rng, n = self.g, self.rng, self.n
        r = model.FSM_PERSISTENCE
        e = rng.standard_normal((n, SCHOOL_YEARS), dtype=_F32)
        zf = r * self.u_fsm[:, None] + np.sqrt(1 - r * r, dtype=_F32) * e
        self.fsm = zf > g._fsm_threshold[self.la][:, None]
        cs = np.cumsum(self.fsm, axis=1, dtype=np.int16)
        lag = np.zeros_like(cs)
        lag[:, 6:] = cs[:, :-6]
        self.ever6 = (cs - lag) > 0
        s = model.SEN_PERSISTENCE
        rng.standard_normal((n, SCHOOL_YEARS), dtype=_F32, out=e)
        zs = s * self.u_sen[:, None] + np.sqrt(1 - s * s, dtype=_F32) * e
        sex = self.male.astype(np.int64)
        self.special = self.u_sen > g._t_special[sex]
        ehc = (zs > g._t_ehc[sex][:, None]) | self.special[:, None]
        support = (zs > g._t_sen[sex][:, None]) & ~ehc
        self.sen = ehc.astype(np.int8) * 2 + support.astype(np.int8)  # 0 N, 1 K, 2 E
        self.need_k = _sample(rng, g._need_k, n)
        self.need_e = _sample(rng, g._need_e, n)

    def _schools(self) -> None:
        g, rng, n = self.g, self.rng, self.n
        sch = g.schools
        u = rng.random((3, n))
        primary = pick_schools(sch, PHASE_PRIMARY, self.la, u[0])
        secondary = pick_schools(sch, PHASE_SECONDARY, self.la, u[1])
        special = pick_schools(sch, PHASE_SPECIAL, self.la, u[2])
        self.primary = np.where(self.special, special, primary)
        self.secondary = np.where(self.special, special, secondary)

    # ------------------------------------------------------------------ tables
    def tables(self) -> dict[str, pa.Table]:
        out = {"pupils": self._pupils()}
        out["census"] = self._census()
        out["ks2"] = self._ks2()
        out["ks4"] = self._ks4()
        out["absence"] = self._absence()
        out["exclusions"] = self._exclusions()
        return out

    def _upns(self) -> pa.Array:
        g = self.g
        key = self.primary * g.years.n_cohorts + self.cohort
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        first = np.searchsorted(sorted_key, sorted_key, side="left")
        rank = np.empty(self.n, dtype=np.int64)
        rank[order] = np.arange(self.n) - first
        serial = g._upn_serials[key] + rank
        g._upn_serials += np.bincount(key, minlength=len(g._upn_serials))
        if serial.max(initial=0) >= 1000:
            raise RuntimeError("more than 999 UPNs for one school and year: too few schools")
        la_num = g.geo.la_codes.astype(np.int64)[self.la]
        year2 = (self.reception - 1) % 100  # allocated in the autumn the pupil started
        digits = upn_digits(la_num, g.schools.estab[self.primary], year2, serial)
        raw = upn_strings(digits)
        offsets = pa.py_buffer((np.arange(self.n + 1, dtype=np.int32) * 13).tobytes())
        return pa.StringArray.from_buffers(self.n, offsets, pa.py_buffer(raw.tobytes()))

    def _pupils(self) -> pa.Table:
        rng, n, pools = self.rng, self.n, self.g.pools
        f_idx = _sample(rng, pools.p_forename_f, n)
        m_idx = _sample(rng, pools.p_forename_m, n)
        n_f = len(pools.forenames_f)
        forenames = pa.concat_arrays([pools.forenames_f, pools.forenames_m])
        fore = np.where(self.male, m_idx + n_f, f_idx)
        # born between 1 September and 31 August, five years before the Reception year ends
        dob = _sept_first(self.reception - 6) + rng.integers(0, 365, n)
        return _table("pupils", {
            "pupil_id": self.pupil_id,
            "upn": self._upns(),
            "forename": _dict(fore, forenames),
            "surname": _dict(_sample(rng, pools.p_surname, n), pools.surnames),
            "date_of_birth": pa.array(dob.astype("datetime64[D]"), pa.date32()),
            "sex": _dict(self.male.astype(np.int8), codes.SEX),
            "postcode": _dict(rng.integers(0, len(pools.postcodes), n), pools.postcodes),
            "la_code": _dict(self.la, codes.LA_CODES),
        })  # fmt: skip

    def _census(self) -> pa.Table:
        g, rng = self.g, self.rng
        years = g.years
        first = np.maximum(years.first, self.reception)
        last = np.minimum(years.last, self.reception + SCHOOL_YEARS - 1)
        k = last - first + 1
        rep = np.repeat(np.arange(self.n), k)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(k) - k, k)
        year = first[rep] + within
        nc = (year - self.reception[rep]).astype(np.int64)
        self.rows = _Rows(rep, year, nc)
        school = np.where(nc <= 6, self.primary[rep], self.secondary[rep])
        sch = g.schools
        prov = self.sen[rep, nc]
        need = np.where(prov == 2, self.need_e[rep], self.need_k[rep])
        in_nat_years = np.isin(year, codes.NATIONALITY_YEARS)
        nat, cob = self._nationality(rng)
        eth = self.eth[rep]
        self.rows.fsm = self.fsm[rep, nc]
        self.rows.sen = prov
        return _table("census", {
            "pupil_id": self.pupil_id[rep],
            "academic_year": year.astype(np.int16),
            "la_code": _dict(self.la[rep], codes.LA_CODES),
            "region": _dict(self.region[rep], codes.REGION_NAMES),
            "urn": sch.urn[school].astype(np.int32),
            "phase": _dict(sch.phase[school], codes.PHASES),
            "nc_year": nc.astype(np.int16),
            "ethnicity_minor": _dict(eth, codes.ETHNICITY_MINOR),
            "ethnicity_major": _dict(g._eth_major[eth], codes.ETHNICITY_MAJOR),
            "language_group": _dict(self.lang[rep], codes.LANGUAGE_GROUPS),
            "fsm_eligible": self.rows.fsm,
            "ever_fsm_6": self.ever6[rep, nc],
            "sen_provision": _dict(prov, codes.SEN_PROVISION),
            "sen_primary_need": _dict(need, codes.SEN_PRIMARY_NEED, mask=prov == 0),
            "nationality": _dict(nat[rep], codes.NATIONALITIES, mask=~in_nat_years),
            "country_of_birth": _dict(cob[rep], codes.COUNTRIES_OF_BIRTH, mask=~in_nat_years),
        })  # fmt: skip

    def _nationality(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pupil-level nationality and country of birth (released only for 2017, 2018)."""
        n = self.n
        names = codes.NATIONALITIES
        foreign = [i for i, c in enumerate(names) if c not in ("GBR", "NOT")]
        pick = np.array(foreign)[rng.integers(0, len(foreign), n)]
        non_gb = self.eal & (rng.random(n) < model.NON_GB_AMONG_EAL)
        nat = np.where(non_gb, pick, names.index("GBR"))
        born_abroad = non_gb | (self.eal & (rng.random(n) < model.BRITISH_BORN_ABROAD_AMONG_EAL))
        cob = np.where(born_abroad, pick, names.index("GBR"))
        nat = np.where(rng.random(n) < model.NOT_OBTAINED, names.index("NOT"), nat)
        cob = np.where(rng.random(n) < model.NOT_OBTAINED, names.index("NOT"), cob)
        return nat, cob

    def _attainment_latent(self, nc: int, sel: np.ndarray, effects: dict[str, float]):
        prov = self.sen[sel, nc]
        latent = (
            effects["ability"] * self.ability[sel]
            + effects["dis"] * self.ever6[sel, nc]
            + effects["female"] * ~self.male[sel]
            + effects["K"] * (prov == 1)
            + effects["E"] * (prov == 2)
            + effects["eal"] * self.eal[sel]
        )
        return latent.astype(_F32)

    def _ks2(self) -> pa.Table:
        rng, years = self.rng, self.g.years
        year = self.reception + 6
        sel = np.flatnonzero((year >= years.first) & (year <= years.last))
        lat = self._attainment_latent(6, sel, {
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
        return _table("ks2", {
            "pupil_id": self.pupil_id[sel],
            "academic_year": year[sel].astype(np.int16),
            "read_score": scores["read"],
            "maths_score": scores["maths"],
            "gps_score": scores["gps"],
            "writing_ta": _dict(writing, codes.WRITING_TA),
            "rwm_expected": rwm,
        })  # fmt: skip

    def _ks4(self) -> pa.Table:
        rng, years = self.rng, self.g.years
        year = self.reception + 11
        sel = np.flatnonzero((year >= years.first) & (year <= years.last))
        lat = self._attainment_latent(11, sel, {
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
        return _table("ks4", {
            "pupil_id": self.pupil_id[sel],
            "academic_year": year[sel].astype(np.int16),
            "attainment8": a8.astype(np.float64),
            "english_grade": eng,
            "maths_grade": mat,
            "basics_grade4": (eng >= 4) & (mat >= 4),
            "basics_grade5": (eng >= 5) & (mat >= 5),
        })  # fmt: skip

    def _absence(self) -> pa.Table:
        rng, r = self.rng, self.rows
        sel = np.flatnonzero(r.nc >= 1)  # compulsory school age: Years 1-11
        pupil = r.rep[sel]
        m = len(sel)
        lo, hi = model.FULL_YEAR_SESSIONS
        possible = rng.integers(lo, hi + 1, m)
        movers = rng.random(m) < model.MOVER_SHARE
        possible = np.where(movers, rng.integers(40, lo, m), possible)
        p = model.ABSENCE_PERSISTENCE
        z = p * self.u_abs[pupil] + np.sqrt(1 - p * p) * rng.standard_normal(m, dtype=_F32)
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
        return _table("absence", {
            "pupil_id": self.pupil_id[pupil],
            "academic_year": r.year[sel].astype(np.int16),
            "sessions_possible": possible.astype(np.int16),
            "sessions_authorised": (absent - unauth).astype(np.int16),
            "sessions_unauthorised": unauth.astype(np.int16),
            "persistent_absentee": absent * 10 >= possible,
        })  # fmt: skip

    def _exclusions(self) -> pa.Table:
        rng, r = self.rng, self.rows
        rows = len(r.rep)
        log_lambda = (
            model.SUSPENSION_LOG_MEAN
            + model.SUSPENSION_FRAILTY_SD * self.frailty[r.rep]
            + model.SUSPENSION_SECONDARY * (r.nc >= 7)
            + model.SUSPENSION_FSM * r.fsm
            + model.SUSPENSION_SEN * (r.sen > 0)
            + model.SUSPENSION_MALE * self.male[r.rep]
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
        reason = np.where(
            is_perm, _sample(rng, self.g._reason_p, m), _sample(rng, self.g._reason_s, m)
        )
        sessions = np.where(
            is_perm,
            rng.integers(*model.PERMANENT_SESSIONS, m),
            np.minimum(
                2 * rng.geometric(model.SUSPENSION_DAYS_P, m)
                - (rng.random(m) < model.HALF_DAY_SHARE),
                90,
            ),
        )
        return _table("exclusions", {
            "pupil_id": self.pupil_id[r.rep[row]],
            "academic_year": r.year[row].astype(np.int16),
            "exclusion_seq": seq.astype(np.int16),
            "category": _dict(is_perm.astype(np.int8), codes.EXCLUSION_CATEGORIES),
            "reason": _dict(reason, codes.EXCLUSION_REASONS),
            "sessions": np.maximum(sessions, 1).astype(np.int16),
        })  # fmt: skip


class _Rows:
    """The census rows of a chunk (pupil index, year, NC year), reused by absence/exclusions."""

    def __init__(self, rep: np.ndarray, year: np.ndarray, nc: np.ndarray) -> None:
        self.rep, self.year, self.nc = rep, year, nc
        self.fsm: np.ndarray
        self.sen: np.ndarray


def _sept_first(calendar_year: np.ndarray) -> np.ndarray:
    """1 September of each calendar year, as datetime64[D]."""
    years = (np.asarray(calendar_year) - 1970).astype("datetime64[Y]")
    return (years.astype("datetime64[M]") + np.timedelta64(8, "M")).astype("datetime64[D]")
