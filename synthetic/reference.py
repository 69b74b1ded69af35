"""Public reference data for one generated dataset: LAs, schools, and name/postcode pools.

LA characteristics (size, FSM rate) come from a fixed seed, so every dataset has the same
"geography" whatever ``--seed`` is; schools, their names and the Faker pools follow the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from faker import Faker
from faker.providers.person.en_GB import Provider as PersonProvider

from synthetic import codes, targets

GEOGRAPHY_SEED = 20240118  # fixed: LA sizes and FSM rates do not change with --seed
PRIMARY_PUPILS_PER_SCHOOL = 280  # DfE 2023/24: ~4.6M primary pupils in ~16,700 schools
SECONDARY_PUPILS_PER_SCHOOL = 950  # ~3.2M pupils (Y7-11) in ~3,450 secondaries
SPECIAL_PUPILS_PER_SCHOOL = 120
SPECIAL_SCHOOL_SHARE = 0.02  # share of pupils taught in special schools throughout
POSTCODE_POOL = 20_000
PHASE_PRIMARY, PHASE_SECONDARY, PHASE_SPECIAL = 0, 1, 2
ESTAB_BASE = (2000, 4000, 7000)  # DfE establishment number ranges by phase

_REGION_INDEX = {name: i for i, name in enumerate(codes.REGION_NAMES)}
_PRIMARY_TYPES = {"community": 0.28, "voluntary_aided": 0.12, "voluntary_controlled": 0.10,
                  "foundation": 0.04, "academy_converter": 0.32, "academy_sponsor_led": 0.10,
                  "free_school": 0.04}  # fmt: skip
_SECONDARY_TYPES = {"community": 0.08, "voluntary_aided": 0.05, "foundation": 0.04,
                    "academy_converter": 0.52, "academy_sponsor_led": 0.22,
                    "free_school": 0.09}  # fmt: skip
_PLACE_SUFFIXES = ("Park", "Green", "Hill", "Lane", "Vale", "Meadows", "Fields", "Wood",
                   "Bridge", "Common", "Grove", "Heath", "Brook", "Road")  # fmt: skip
_SAINTS = ("Mary's", "John's", "Peter's", "Joseph's", "Anne's", "Michael's", "Paul's",
           "Andrew's", "George's", "Margaret's", "Thomas'", "Bede's")  # fmt: skip


@dataclass(frozen=True)
class Geography:
    """The 153 LAs: code, name, region index, share of pupils, FSM rate."""

    la_codes: np.ndarray  # str
    la_names: tuple[str, ...]
    region: np.ndarray  # int, index into codes.REGION_NAMES
    share: np.ndarray  # float, sums to 1
    fsm_rate: np.ndarray  # float, 0..1


@dataclass(frozen=True)
class Schools:
    """Schools sorted by (phase, LA); ``first[phase][la]`` .. ``first[phase][la+1]`` slice."""

    urn: np.ndarray
    name: list[str]
    la: np.ndarray
    phase: np.ndarray
    school_type: list[str]
    estab: np.ndarray
    cum_weight: np.ndarray  # cumulative size weight over all schools, in this order
    first: np.ndarray  # (3, n_la + 1) start index of each (phase, LA) block


@dataclass(frozen=True)
class Pools:
    """Name and postcode pools built once by Faker; pupils sample them with numpy."""

    forenames_f: pa.Array
    forenames_m: pa.Array
    surnames: pa.Array
    postcodes: pa.Array
    p_forename_f: np.ndarray
    p_forename_m: np.ndarray
    p_surname: np.ndarray


def build_geography() -> Geography:
    rng = np.random.default_rng(GEOGRAPHY_SEED)
    la_codes = np.array(codes.LA_CODES)
    names = tuple(codes.LOCAL_AUTHORITIES[c][0] for c in codes.LA_CODES)
    region_names = [codes.REGIONS[codes.LOCAL_AUTHORITIES[c][1]] for c in codes.LA_CODES]
    region = np.array([_REGION_INDEX[r] for r in region_names])
    size = rng.lognormal(0.0, 0.6, len(la_codes))
    for tiny in ("201", "420"):  # City of London, Isles of Scilly
        size[la_codes == tiny] *= 0.01
    share = np.zeros(len(la_codes))
    fsm = np.zeros(len(la_codes))
    spread = np.exp(rng.normal(0.0, 0.22, len(la_codes)))
    for r, rname in enumerate(codes.REGION_NAMES):
        m = region == r
        share[m] = targets.REGION_PUPIL_SHARE[rname] * size[m] / size[m].sum()
        # spread LAs around the region's rate, keeping the region's pupil-weighted mean
        rates = spread[m] / np.average(spread[m], weights=share[m])
        fsm[m] = np.clip(targets.REGION_FSM[rname] / 100 * rates, 0.03, 0.6)
    return Geography(la_codes, names, region, share / share.sum(), fsm)


def _school_names(rng: np.random.Generator, phase: np.ndarray, types: list[str]) -> list[str]:
    surnames = list(PersonProvider.last_names)
    base = [
        f"{surnames[rng.integers(len(surnames))]} {_PLACE_SUFFIXES[rng.integers(14)]}"
        for _ in range(len(phase))
    ]
    names = []
    for b, ph, ty in zip(base, phase, types, strict=True):
        if ph == PHASE_SPECIAL:
            names.append(f"{b} Special School")
        elif ty in ("voluntary_aided", "voluntary_controlled"):
            faith = "C of E" if rng.random() < 0.65 else "Catholic"
            level = "Primary" if ph == PHASE_PRIMARY else "High"
            names.append(f"St {_SAINTS[rng.integers(len(_SAINTS))]} {faith} {level} School")
        elif ph == PHASE_PRIMARY:
            names.append(f"{b} {'Primary Academy' if 'academy' in ty else 'Primary School'}")
        else:
            names.append(f"{b} {'Academy' if ty.startswith('academy') else 'School'}")
    return names


def build_schools(geo: Geography, pupils: int, n_cohorts: int, rng: np.random.Generator,
                  fake: Faker) -> Schools:  # fmt: skip
    """Schools per LA in proportion to its pupils (at least one of each phase per LA)."""
    per_cohort = pupils * geo.share / n_cohorts
    counts = np.stack([
        np.maximum(1, np.round(7 * per_cohort / PRIMARY_PUPILS_PER_SCHOOL)),
        np.maximum(1, np.round(5 * per_cohort / SECONDARY_PUPILS_PER_SCHOOL)),
        np.maximum(1, np.round(12 * per_cohort * SPECIAL_SCHOOL_SHARE / SPECIAL_PUPILS_PER_SCHOOL)),
    ]).astype(np.int64)  # fmt: skip
    n_la = len(geo.la_codes)
    phase = np.repeat(np.repeat(np.arange(3), n_la), counts.ravel())
    la = np.repeat(np.tile(np.arange(n_la), 3), counts.ravel())
    block_sizes = counts.ravel()
    starts = np.concatenate([[0], np.cumsum(block_sizes)])
    within = np.arange(len(phase)) - np.repeat(starts[:-1], block_sizes)
    estab = np.array(ESTAB_BASE)[phase] + within
    urn = rng.choice(900_000, size=len(phase), replace=False) + 100_000
    weight = rng.lognormal(0.0, 0.35, len(phase))
    cum = np.cumsum(weight)
    types: list[str] = []
    for ph in phase:
        if ph == PHASE_SPECIAL:
            types.append("special")
            continue
        table = _PRIMARY_TYPES if ph == PHASE_PRIMARY else _SECONDARY_TYPES
        keys = list(table)
        p = np.array(list(table.values()))
        types.append(keys[rng.choice(len(keys), p=p / p.sum())])
    names = _school_names(rng, phase, types)
    return Schools(urn, names, la, phase, types, estab, cum, _firsts(starts, n_la))


def _firsts(starts: np.ndarray, n_la: int) -> np.ndarray:
    first = np.empty((3, n_la + 1), dtype=np.int64)
    for ph in range(3):
        first[ph] = starts[ph * n_la : ph * n_la + n_la + 1]
    return first


def pick_schools(schools: Schools, phase: int, la: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index of a school of ``phase`` in each pupil's LA, chosen in proportion to its size."""
    lo = schools.first[phase][la]
    hi = schools.first[phase][la + 1]
    cum = schools.cum_weight
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    target = base + u * (cum[hi - 1] - base)
    idx = np.searchsorted(cum, target, side="right")
    picked: np.ndarray = np.minimum(np.maximum(idx, lo), hi - 1)
    return picked


def build_pools(fake: Faker) -> Pools:
    """Forenames by sex (weighted by rank), surnames (Faker's weights), postcodes."""

    def ranked(names: list[str]) -> tuple[pa.Array, np.ndarray]:
        w = 1.0 / (np.arange(len(names)) + 8.0)
        return pa.array(names), w / w.sum()

    ff, pf = ranked(list(PersonProvider.first_names_female))
    fm, pm = ranked(list(PersonProvider.first_names_male))
    sn = PersonProvider.last_names
    surnames = list(sn)
    ws = np.array(list(sn.values()) if isinstance(sn, dict) else [1.0] * len(surnames))
    postcodes = pa.array([fake.postcode() for _ in range(POSTCODE_POOL)])
    return Pools(ff, fm, pa.array(surnames), postcodes, pf, pm, ws / ws.sum())


def make_faker(seed: int) -> Faker:
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    return fake
