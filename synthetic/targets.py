"""Calibration targets: the published national figures the generator aims at.

Each target names its statistic, the figure, its source and year, and the tolerance a
generated dataset (≥ 50,000 pupils) must land within. The tolerances are wider than the
sampling error of such a dataset on purpose: the generator is a model, not a copy, and the
published figures come from different years. ``tests/unit/synthetic/test_calibration.py``
measures every one of them; the README quotes measured against target.
"""

from __future__ import annotations

from dataclasses import dataclass

_SPC = "DfE, Schools, pupils and their characteristics"
_SEN = "DfE, Special educational needs in England"
_KS2 = "DfE, Key stage 2 attainment"
_KS4 = "DfE, Key stage 4 performance"
_ABS = "DfE, Pupil absence in schools in England"
_EXC = "DfE, Suspensions and permanent exclusions in England"


@dataclass(frozen=True)
class Target:
    """One published figure and how close a generated dataset must come to it.

    ``value`` and ``tolerance`` share the unit in ``unit`` (percent, points, per 100 pupils).

    >>> FSM_NATIONAL.within(25.9)
    True
    """

    name: str
    value: float
    tolerance: float
    unit: str
    source: str
    year: str

    def within(self, measured: float) -> bool:
        return abs(measured - self.value) <= self.tolerance


FSM_NATIONAL = Target("FSM eligible, all pupils", 24.6, 1.5, "%", _SPC, "2023/24")
FSM_NORTH_EAST = Target("FSM eligible, North East", 31.0, 2.5, "%", _SPC, "2023/24")
FSM_SOUTH_EAST = Target("FSM eligible, South East", 20.0, 2.0, "%", _SPC, "2023/24")
SEN_SUPPORT = Target("SEN support (K)", 14.0, 1.0, "%", _SEN, "2023/24")
EHC_PLAN = Target("EHC plan (E)", 5.0, 0.6, "%", _SEN, "2023/24")
EHC_BOYS_SHARE = Target("Boys among EHC-plan pupils", 71.0, 3.0, "%", _SEN, "2023/24")
EAL = Target("First language other than English", 21.0, 1.5, "%", _SPC, "2023/24")
WHITE_BRITISH = Target("White British", 61.0, 2.0, "%", _SPC, "2023/24")
KS2_RWM = Target("KS2 expected standard in RWM, all", 62.0, 3.0, "%", _KS2, "2023/24")
KS2_RWM_DISADVANTAGED = Target("KS2 RWM, disadvantaged", 46.0, 3.0, "%", _KS2, "2023/24")
KS2_RWM_OTHERS = Target("KS2 RWM, other pupils", 67.0, 3.0, "%", _KS2, "2023/24")
A8_MEAN = Target("Attainment 8, mean", 46.0, 2.0, "points", _KS4, "2023/24")
A8_DISADVANTAGE_GAP = Target("Attainment 8 gap, others - disadvantaged", 14.0, 2.5, "points",
                             _KS4, "2023/24")  # fmt: skip
ABSENCE_RATE = Target("Overall absence rate", 6.9, 0.5, "%", _ABS, "2023/24")
PERSISTENT_ABSENCE = Target("Persistent absentees (>= 10% missed)", 19.0, 2.0, "%", _ABS,
                            "2023/24")  # fmt: skip
SUSPENSION_RATE = Target("Suspensions per 100 pupils", 11.0, 1.5, "per 100", _EXC, "2023/24")
PERMANENT_RATE = Target("Permanent exclusions per 100 pupils", 0.13, 0.05, "per 100", _EXC,
                        "2023/24")  # fmt: skip

# Directions the data must show (tested as inequalities, not figures).
#   KS2 RWM: girls above boys; FSM pupils miss more sessions and are persistently absent more
#   often than others, as are pupils with SEN; EAL is higher in London than elsewhere.

ALL: tuple[Target, ...] = (
    FSM_NATIONAL, FSM_NORTH_EAST, FSM_SOUTH_EAST, SEN_SUPPORT, EHC_PLAN, EHC_BOYS_SHARE, EAL,
    WHITE_BRITISH, KS2_RWM, KS2_RWM_DISADVANTAGED, KS2_RWM_OTHERS, A8_MEAN, A8_DISADVANTAGE_GAP,
    ABSENCE_RATE, PERSISTENT_ABSENCE, SUSPENSION_RATE, PERMANENT_RATE,
)  # fmt: skip

# Region FSM rates the generator is parameterised with (percent, approx. DfE 2023/24 by region).
REGION_FSM: dict[str, float] = {
    "North East": 31.0, "North West": 28.0, "Yorkshire and The Humber": 26.0,
    "East Midlands": 23.5, "West Midlands": 28.0, "East of England": 20.5, "London": 26.0,
    "South East": 20.0, "South West": 20.5,
}  # fmt: skip
# Share of England's pupils in each region (approx., DfE 2023/24), used to size LAs.
REGION_PUPIL_SHARE: dict[str, float] = {
    "North East": 0.045, "North West": 0.133, "Yorkshire and The Humber": 0.100,
    "East Midlands": 0.085, "West Midlands": 0.110, "East of England": 0.115, "London": 0.160,
    "South East": 0.165, "South West": 0.087,
}  # fmt: skip
# White British share by region (approx., DfE 2023/24); the national figure follows.
REGION_WHITE_BRITISH: dict[str, float] = {
    "North East": 0.84, "North West": 0.70, "Yorkshire and The Humber": 0.68,
    "East Midlands": 0.66, "West Midlands": 0.57, "East of England": 0.67, "London": 0.23,
    "South East": 0.68, "South West": 0.80,
}  # fmt: skip
