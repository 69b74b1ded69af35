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

from synthetic import codes, model, outcomes, targets
from synthetic.columns import arrow_table, dictionary, sample, sample_rows
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
        la = arrow_table("local_authorities", {
            "la_code": pa.array(geo.la_codes.tolist()),
            "la_name": pa.array(list(geo.la_names)),
            "region": dictionary(geo.region, codes.REGION_NAMES),
        })  # fmt: skip
        schools = arrow_table("schools", {
            "urn": sch.urn.astype(np.int32),
            "school_name": pa.array(sch.name),
            "la_code": dictionary(sch.la, codes.LA_CODES),
            "phase": dictionary(sch.phase, codes.PHASES),
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
        self.eth = sample_rows(rng, gen._eth_cum, self.region)
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
        self.need_k = sample(rng, g._need_k, n)
        self.need_e = sample(rng, g._need_e, n)

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
        out["ks2"] = outcomes.ks2_table(self)
        out["ks4"] = outcomes.ks4_table(self)
        out["absence"] = outcomes.absence_table(self)
        out["exclusions"] = outcomes.exclusions_table(self)
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
        f_idx = sample(rng, pools.p_forename_f, n)
        m_idx = sample(rng, pools.p_forename_m, n)
        n_f = len(pools.forenames_f)
        forenames = pa.concat_arrays([pools.forenames_f, pools.forenames_m])
        fore = np.where(self.male, m_idx + n_f, f_idx)
        # born between 1 September and 31 August, five years before the Reception year ends
        dob = _sept_first(self.reception - 6) + rng.integers(0, 365, n)
        return arrow_table("pupils", {
            "pupil_id": self.pupil_id,
            "upn": self._upns(),
            "forename": dictionary(fore, forenames),
            "surname": dictionary(sample(rng, pools.p_surname, n), pools.surnames),
            "date_of_birth": pa.array(dob.astype("datetime64[D]"), pa.date32()),
            "sex": dictionary(self.male.astype(np.int8), codes.SEX),
            "postcode": dictionary(rng.integers(0, len(pools.postcodes), n), pools.postcodes),
            "la_code": dictionary(self.la, codes.LA_CODES),
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
        return arrow_table("census", {
            "pupil_id": self.pupil_id[rep],
            "academic_year": year.astype(np.int16),
            "la_code": dictionary(self.la[rep], codes.LA_CODES),
            "region": dictionary(self.region[rep], codes.REGION_NAMES),
            "urn": sch.urn[school].astype(np.int32),
            "phase": dictionary(sch.phase[school], codes.PHASES),
            "nc_year": nc.astype(np.int16),
            "ethnicity_minor": dictionary(eth, codes.ETHNICITY_MINOR),
            "ethnicity_major": dictionary(g._eth_major[eth], codes.ETHNICITY_MAJOR),
            "language_group": dictionary(self.lang[rep], codes.LANGUAGE_GROUPS),
            "fsm_eligible": self.rows.fsm,
            "ever_fsm_6": self.ever6[rep, nc],
            "sen_provision": dictionary(prov, codes.SEN_PROVISION),
            "sen_primary_need": dictionary(need, codes.SEN_PRIMARY_NEED, mask=prov == 0),
            "nationality": dictionary(nat[rep], codes.NATIONALITIES, mask=~in_nat_years),
            "country_of_birth": dictionary(cob[rep], codes.COUNTRIES_OF_BIRTH, mask=~in_nat_years),
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
