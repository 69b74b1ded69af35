"""Model parameters of the generator: named, with what each one is tuned to.

Rates that have a published figure are in ``targets``; these are the knobs that produce
them (latent-variable thresholds, effect sizes, persistence), tuned once against a 1M-pupil
dataset and checked by the calibration tests.
"""

from __future__ import annotations

from statistics import NormalDist

_N = NormalDist()


def upper_threshold(rate: float) -> float:
    """The z such that P(Z > z) = rate for a standard normal Z.

    >>> round(upper_threshold(0.5), 6)
    0.0
    """
    return _N.inv_cdf(1.0 - rate)


MALE_SHARE = 0.512

# FSM: a pupil-level propensity plus yearly noise (probit); correlation between years.
FSM_PERSISTENCE = 0.985

# SEN: probit with sex-specific thresholds; EHC boys share ~71 %.
SEN_PERSISTENCE = 0.9
SEN_FSM_LOADING = 0.25  # SEN is more common among FSM pupils
EHC_RATE = {"M": 0.067, "F": 0.027}
SEN_SUPPORT_RATE = {"M": 0.178, "F": 0.104}
SPECIAL_SCHOOL_RATE = {"M": 0.027, "F": 0.011}  # taught in a special school, EHC plan

# Ethnicity: national mix of the non-White-British minor codes (per cent of all pupils,
# approx. DfE 2023/24); scaled in each region to 1 - that region's White British share.
ETHNICITY_OTHER_MIX: dict[str, float] = {
    "WIRI": 0.2, "WIRT": 0.1, "WOTH": 7.5, "WROM": 0.7, "MWBC": 1.7, "MWBA": 0.9,
    "MWAS": 1.8, "MOTH": 2.2, "AIND": 3.6, "APKN": 4.6, "ABAN": 1.9, "AOTH": 2.1,
    "BCRB": 1.0, "BAFR": 3.8, "BOTH": 0.8, "CHNE": 0.5, "OOTH": 2.3, "REFU": 0.5, "NOBT": 0.5,
}  # fmt: skip
# Probability that the first language is other than English, by minor ethnicity.
EAL_BY_ETHNICITY: dict[str, float] = {
    "WBRI": 0.006, "WIRI": 0.02, "WIRT": 0.03, "WOTH": 0.65, "WROM": 0.72, "MWBC": 0.03,
    "MWBA": 0.11, "MWAS": 0.22, "MOTH": 0.22, "AIND": 0.56, "APKN": 0.70, "ABAN": 0.76,
    "AOTH": 0.72, "BCRB": 0.04, "BAFR": 0.54, "BOTH": 0.40, "CHNE": 0.65, "OOTH": 0.72,
    "REFU": 0.27, "NOBT": 0.27,
}  # fmt: skip
LANGUAGE_UNCLASSIFIED = 0.004

# Nationality / country of birth (2017, 2018 only): non-British share among EAL pupils.
NON_GB_AMONG_EAL = 0.35
NOT_OBTAINED = 0.04  # "not yet obtained / refused"
BRITISH_BORN_ABROAD_AMONG_EAL = 0.1

# SEN primary need distributions (approx. DfE 2023/24) by provision.
NEED_SUPPORT = {"SPLD": 0.15, "MLD": 0.17, "SLD": 0.003, "PMLD": 0.001, "SEMH": 0.20,
                "SLCN": 0.24, "HI": 0.015, "VI": 0.007, "MSI": 0.002, "PD": 0.02,
                "ASD": 0.09, "OTH": 0.05, "NSA": 0.052}  # fmt: skip
NEED_EHC = {"SPLD": 0.03, "MLD": 0.08, "SLD": 0.09, "PMLD": 0.03, "SEMH": 0.14,
            "SLCN": 0.19, "HI": 0.02, "VI": 0.01, "MSI": 0.003, "PD": 0.04, "ASD": 0.33,
            "OTH": 0.027, "NSA": 0.01}  # fmt: skip

# KS2: latent attainment = ability + effects; scaled scores around the expected 100.
KS2_DISADVANTAGED = -0.5
KS2_FEMALE = 0.12
KS2_SEN_SUPPORT = -1.0
KS2_EHC = -1.9
KS2_EAL = -0.05
KS2_SUBJECT_NOISE = 0.45  # subject-specific share of variation
KS2_SCORE_CENTRE = {"read": 106.6, "maths": 106.4, "gps": 107.2}
KS2_SCORE_SCALE = 7.0
KS2_WRITING_CUTS = (1.0, -1.02, -1.9, -2.6)  # GDS, EXS, WTS, PKF (else BLW), on the latent

# KS4: Attainment 8 from the same ability; grades follow A8.
KS4_ABILITY_LOADING = 0.9
KS4_DISADVANTAGED = -0.72
KS4_FEMALE = 0.12
KS4_SEN_SUPPORT = -0.75
KS4_EHC = -1.6
KS4_EAL = 0.08
A8_CENTRE = 52.0
A8_SCALE = 17.5
KS4_NOISE = 0.35
GRADE_NOISE = 0.9
ENGLISH_GRADE_OFFSET = 0.35  # grades sit a little above A8 / 10 (basics 4+ ~65 %, 5+ ~46 %)
MATHS_GRADE_OFFSET = 0.15

# Absence: lognormal absence rate per pupil-year, persistent within pupil.
ABSENCE_LOG_MEAN = -3.20
ABSENCE_LOG_SD = 0.69
ABSENCE_PERSISTENCE = 0.6
ABSENCE_FSM = 0.42
ABSENCE_SEN_SUPPORT = 0.25
ABSENCE_EHC = 0.38
ABSENCE_SECONDARY = 0.22
UNAUTHORISED_SHARE = (2.0, 4.5)  # Beta(a, b): ~31 % of absence unauthorised
UNAUTHORISED_FSM_BOOST = 1.6
MOVER_SHARE = 0.05  # pupil-years with fewer sessions possible (joined or left mid-year)
FULL_YEAR_SESSIONS = (318, 332)

# Exclusions: Poisson suspensions with a pupil-level frailty, capped per year.
SUSPENSION_LOG_MEAN = -5.30
SUSPENSION_FRAILTY_SD = 1.5
SUSPENSION_SECONDARY = 1.9
SUSPENSION_FSM = 0.85
SUSPENSION_SEN = 0.7
SUSPENSION_MALE = 0.6
PERMANENT_PER_SUSPENSION = 0.0115
SUSPENSION_DAYS_P = 0.45  # days per suspension ~ geometric; sessions = 2 per day
HALF_DAY_SHARE = 0.15  # suspensions ending at midday (one session fewer)
PERMANENT_SESSIONS = (10, 91)  # sessions recorded for a permanent exclusion: [low, high)
SUSPENSION_REASONS = {"PD": 0.46, "VA": 0.13, "PP": 0.11, "VP": 0.08, "PA": 0.04,
                      "DA": 0.03, "DM": 0.02, "BU": 0.01, "RA": 0.01, "SM": 0.01,
                      "TH": 0.01, "MT": 0.01, "LG": 0.005, "DS": 0.003, "WT": 0.002,
                      "OT": 0.05}  # fmt: skip
PERMANENT_REASONS = {"PD": 0.38, "PP": 0.13, "PA": 0.10, "DA": 0.12, "VA": 0.08,
                     "VP": 0.04, "SM": 0.03, "DM": 0.02, "BU": 0.01, "RA": 0.01,
                     "TH": 0.01, "MT": 0.01, "OT": 0.06}  # fmt: skip
