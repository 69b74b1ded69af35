"""Every table and column of the synthetic NPD, declared once.

The generator, the loader (types, keys, CHECK constraints), the catalogue command, the
policy defaults and the query engine (public domains, clamping bounds, per-pupil bounds)
all read this declaration. Column names are the interface researchers write SQL against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from synthetic import codes


class ColumnClass(StrEnum):
    """How sensitive a column is; the policy decides what each class may do."""

    DIRECT_IDENTIFIER = "direct_identifier"  # never queryable (pupil_id: join key only)
    QUASI_IDENTIFIER = "quasi_identifier"  # only in its declared coarse (domain) form
    SPECIAL_CATEGORY = "special_category"  # ethnicity, SEN: only if the project is approved
    RESTRICTED = "restricted"  # nationality, country of birth: never for other purposes
    GENERAL = "general"


@dataclass(frozen=True)
class Column:
    """One column: its type, meaning, class, and what the engine may assume about it.

    ``domain`` is the public list of values a GROUP BY key may take (every one is released,
    empty or not); ``domain_ref`` names a public reference column that serves as the domain
    (``schools.urn``). ``bounds`` are the clamping bounds for sums, averages and quantiles.
    """

    name: str
    dtype: str
    description: str
    npd_field: str
    cls: ColumnClass = ColumnClass.GENERAL
    domain: tuple[object, ...] | None = None
    domain_ref: str | None = None
    bounds: tuple[float, float] | None = None
    nullable: bool = False
    join_key: bool = False

    @property
    def groupable(self) -> bool:
        return self.domain is not None or self.domain_ref is not None


@dataclass(frozen=True)
class Table:
    """One table. Private tables carry ``pupil_id`` (the privacy unit).

    ``max_rows_per_pupil`` is the most rows one pupil can have; ``bound_enforced_by`` says
    which database constraint guarantees it (``None``: the engine must truncate).
    """

    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    private: bool = True
    max_rows_per_pupil: int | None = None
    bound_enforced_by: str | None = None
    unique: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[tuple[str, str], ...] = field(default=())  # (column, "table.column")
    checks: tuple[str, ...] = ()

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name}.{name}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


C = ColumnClass
YEARS = codes.ACADEMIC_YEARS
N_YEARS = len(YEARS)


def _pid() -> Column:
    return Column(
        "pupil_id", "BIGINT", "Pseudonymous pupil key: the privacy unit, usable only as a join key",
        "PupilMatchingRefAnonymous", C.DIRECT_IDENTIFIER, join_key=True,
    )  # fmt: skip


_YEAR_DESC = "Academic year, as the calendar year in which it ends (2019 = 2018/19)"


def _year(desc: str = _YEAR_DESC) -> Column:
    return Column("academic_year", "SMALLINT", desc, "AcademicYear", C.GENERAL, domain=YEARS)


def _la(npd: str, desc: str, cls: ColumnClass = C.GENERAL) -> Column:
    return Column("la_code", "VARCHAR", desc, npd, cls, domain=codes.LA_CODES)


PUPILS = Table(
    "pupils",
    "One row per pupil: who they are. Every column is an identifier or quasi-identifier.",
    (
        _pid(),
        Column("upn", "VARCHAR", "Unique Pupil Number: 13 characters, DfE check letter first",
               "UPN", C.DIRECT_IDENTIFIER),
        Column("forename", "VARCHAR", "Legal forename", "Forename", C.DIRECT_IDENTIFIER),
        Column("surname", "VARCHAR", "Legal surname", "Surname", C.DIRECT_IDENTIFIER),
        Column("date_of_birth", "DATE", "Date of birth", "DOB", C.DIRECT_IDENTIFIER),
        Column("sex", "VARCHAR", "Sex as recorded by the school", "Gender", C.QUASI_IDENTIFIER,
               domain=codes.SEX),
        Column("postcode", "VARCHAR", "Home postcode", "Postcode", C.DIRECT_IDENTIFIER),
        _la("LA", "Home local authority (latest)", C.QUASI_IDENTIFIER),
    ),
    primary_key=("pupil_id",),
    max_rows_per_pupil=1,
    bound_enforced_by="PRIMARY KEY (pupil_id)",
    unique=(("upn",),),
    foreign_keys=(("la_code", "local_authorities.la_code"),),
    checks=("length(upn) = 13",),
)  # fmt: skip

CENSUS = Table(
    "census",
    "School census (spring): one row per pupil per academic year",
    (
        _pid(),
        _year(),
        _la("LA", "Local authority of the school"),
        Column("region", "VARCHAR", "Government office region of the school's LA", "Region",
               domain=codes.REGION_NAMES),
        Column("urn", "INTEGER", "Unique Reference Number of the school", "URN",
               C.QUASI_IDENTIFIER, domain_ref="schools.urn"),
        Column("phase", "VARCHAR", "Phase of the school", "Phase", domain=codes.PHASES),
        Column("nc_year", "SMALLINT", "National Curriculum year group (0 = Reception)",
               "NCyearActual", domain=codes.NC_YEARS, bounds=(0, 11)),
        Column("ethnicity_minor", "VARCHAR", "Ethnicity, DfE minor (extended) code",
               "EthnicGroupMinor", C.SPECIAL_CATEGORY, domain=codes.ETHNICITY_MINOR),
        Column("ethnicity_major", "VARCHAR", "Ethnicity, DfE major group", "EthnicGroupMajor",
               C.SPECIAL_CATEGORY, domain=codes.ETHNICITY_MAJOR),
        Column("language_group", "VARCHAR", "First language: ENG, OTH (other than English), UNC",
               "LanguageGroup", domain=codes.LANGUAGE_GROUPS),
        Column("fsm_eligible", "BOOLEAN", "Eligible for free school meals on census day",
               "FSMeligible", domain=(False, True)),
        Column("ever_fsm_6", "BOOLEAN", "FSM-eligible at any time in the last 6 years "
               "(disadvantaged)", "EVERFSM_6", domain=(False, True)),
        Column("sen_provision", "VARCHAR", "SEN provision: N none, K SEN support, E EHC plan",
               "SENprovision", C.SPECIAL_CATEGORY, domain=codes.SEN_PROVISION),
        Column("sen_primary_need", "VARCHAR", "Primary type of SEN need (null without SEN)",
               "PrimarySENtype", C.SPECIAL_CATEGORY, domain=codes.SEN_PRIMARY_NEED,
               nullable=True),
        Column("nationality", "VARCHAR", "Nationality (collected 2016/17-2017/18 only)",
               "Nationality", C.RESTRICTED, domain=codes.NATIONALITIES, nullable=True),
        Column("country_of_birth", "VARCHAR", "Country of birth (collected 2016/17-2017/18 only)",
               "CountryOfBirth", C.RESTRICTED, domain=codes.COUNTRIES_OF_BIRTH, nullable=True),
    ),
    primary_key=("pupil_id", "academic_year"),
    max_rows_per_pupil=N_YEARS,
    bound_enforced_by="PRIMARY KEY (pupil_id, academic_year)",
    foreign_keys=(("pupil_id", "pupils.pupil_id"), ("urn", "schools.urn"),
                  ("la_code", "local_authorities.la_code")),
)  # fmt: skip

KS2 = Table(
    "ks2",
    "Key stage 2 results, end of Year 6: one row per pupil",
    (
        _pid(),
        _year("Academic year the pupil sat KS2"),
        Column("read_score", "SMALLINT", "Reading scaled score (80-120)", "KS2_READSCORE",
               bounds=(80, 120), domain=tuple(range(80, 121))),
        Column("maths_score", "SMALLINT", "Maths scaled score (80-120)", "KS2_MATSCORE",
               bounds=(80, 120), domain=tuple(range(80, 121))),
        Column("gps_score", "SMALLINT", "Grammar, punctuation and spelling scaled score (80-120)",
               "KS2_GPSSCORE", bounds=(80, 120), domain=tuple(range(80, 121))),
        Column("writing_ta", "VARCHAR", "Writing teacher assessment", "KS2_WRITTA",
               domain=codes.WRITING_TA),
        Column("rwm_expected", "BOOLEAN", "Met the expected standard in reading, writing and maths",
               "KS2_RWM_EXP", domain=(False, True)),
    ),
    primary_key=("pupil_id", "academic_year"),
    max_rows_per_pupil=1,
    bound_enforced_by="UNIQUE (pupil_id)",
    unique=(("pupil_id",),),
    foreign_keys=(("pupil_id", "pupils.pupil_id"),),
    checks=("read_score BETWEEN 80 AND 120", "maths_score BETWEEN 80 AND 120",
            "gps_score BETWEEN 80 AND 120"),
)  # fmt: skip

_GRADES = tuple(range(0, 10))  # 9-1, 0 = U
KS4 = Table(
    "ks4",
    "Key stage 4 results, end of Year 11: one row per pupil",
    (
        _pid(),
        _year("Academic year the pupil completed KS4"),
        Column("attainment8", "DOUBLE", "Attainment 8 score (0-90)", "ATT8", bounds=(0, 90)),
        Column("english_grade", "SMALLINT", "Best English GCSE grade (9-1, 0 = U)",
               "KS4_HGE", domain=_GRADES, bounds=(0, 9)),
        Column("maths_grade", "SMALLINT", "Maths GCSE grade (9-1, 0 = U)", "KS4_HGM",
               domain=_GRADES, bounds=(0, 9)),
        Column("basics_grade4", "BOOLEAN", "Grade 4 or above in English and maths",
               "KS4_EBACC_94", domain=(False, True)),
        Column("basics_grade5", "BOOLEAN", "Grade 5 or above in English and maths",
               "KS4_EBACC_95", domain=(False, True)),
    ),
    primary_key=("pupil_id", "academic_year"),
    max_rows_per_pupil=1,
    bound_enforced_by="UNIQUE (pupil_id)",
    unique=(("pupil_id",),),
    foreign_keys=(("pupil_id", "pupils.pupil_id"),),
    checks=("attainment8 BETWEEN 0 AND 90", "english_grade BETWEEN 0 AND 9",
            "maths_grade BETWEEN 0 AND 9"),
)  # fmt: skip

ABSENCE = Table(
    "absence",
    "Absence over the academic year: one row per pupil per year",
    (
        _pid(),
        _year(),
        Column("sessions_possible", "SMALLINT", "Half-day sessions possible", "SESSIONS_POSS",
               bounds=(0, 400)),
        Column("sessions_authorised", "SMALLINT", "Authorised absence sessions", "AUTHABS",
               bounds=(0, 400)),
        Column("sessions_unauthorised", "SMALLINT", "Unauthorised absence sessions", "UNAUTHABS",
               bounds=(0, 400)),
        Column("persistent_absentee", "BOOLEAN", "Missed 10% or more of possible sessions",
               "PERSISTENT_ABS", domain=(False, True)),
    ),
    primary_key=("pupil_id", "academic_year"),
    max_rows_per_pupil=N_YEARS,
    bound_enforced_by="PRIMARY KEY (pupil_id, academic_year)",
    foreign_keys=(("pupil_id", "pupils.pupil_id"),),
    checks=("sessions_authorised + sessions_unauthorised <= sessions_possible",),
)  # fmt: skip

MAX_EXCLUSIONS_PER_YEAR = 6
EXCLUSIONS = Table(
    "exclusions",
    "Suspensions and permanent exclusions: one row per exclusion",
    (
        _pid(),
        _year(),
        Column("exclusion_seq", "SMALLINT", "Order of this exclusion within the pupil's year "
               f"(1-{MAX_EXCLUSIONS_PER_YEAR})", "EXCLUSION_SEQ",
               domain=tuple(range(1, MAX_EXCLUSIONS_PER_YEAR + 1))),
        Column("category", "VARCHAR", "suspension or permanent", "CATEGORY",
               domain=codes.EXCLUSION_CATEGORIES),
        Column("reason", "VARCHAR", "DfE exclusion reason code", "REASON",
               domain=codes.EXCLUSION_REASONS),
        Column("sessions", "SMALLINT", "Sessions excluded (half days)", "SESSIONS",
               bounds=(1, 90)),
    ),
    primary_key=("pupil_id", "academic_year", "exclusion_seq"),
    max_rows_per_pupil=N_YEARS * MAX_EXCLUSIONS_PER_YEAR,
    bound_enforced_by=f"PRIMARY KEY (pupil_id, academic_year, exclusion_seq) with "
                      f"exclusion_seq BETWEEN 1 AND {MAX_EXCLUSIONS_PER_YEAR}",
    foreign_keys=(("pupil_id", "pupils.pupil_id"),),
    checks=(f"exclusion_seq BETWEEN 1 AND {MAX_EXCLUSIONS_PER_YEAR}", "sessions BETWEEN 1 AND 90"),
)  # fmt: skip

LOCAL_AUTHORITIES = Table(
    "local_authorities",
    "The 153 English local authorities (public reference data)",
    (
        Column("la_code", "VARCHAR", "3-digit DfE LA code", "LA", domain=codes.LA_CODES),
        Column("la_name", "VARCHAR", "LA name", "LA_NAME",
               domain=tuple(sorted(n for n, _r in codes.LOCAL_AUTHORITIES.values()))),
        Column("region", "VARCHAR", "Government office region", "Region",
               domain=codes.REGION_NAMES),
    ),
    primary_key=("la_code",),
    private=False,
)  # fmt: skip

SCHOOLS = Table(
    "schools",
    "Schools (public reference data, as in Get Information about Schools)",
    (
        Column("urn", "INTEGER", "Unique Reference Number", "URN", domain_ref="schools.urn"),
        Column("school_name", "VARCHAR", "School name", "SCHNAME"),
        Column("la_code", "VARCHAR", "LA of the school", "LA", domain=codes.LA_CODES),
        Column("phase", "VARCHAR", "Phase", "PHASE", domain=codes.PHASES),
        Column("school_type", "VARCHAR", "Type of establishment", "TYPE",
               domain=codes.SCHOOL_TYPES),
    ),
    primary_key=("urn",),
    private=False,
    foreign_keys=(("la_code", "local_authorities.la_code"),),
)  # fmt: skip

# Load order respects foreign keys.
TABLES: dict[str, Table] = {
    t.name: t for t in (LOCAL_AUTHORITIES, SCHOOLS, PUPILS, CENSUS, KS2, KS4, ABSENCE, EXCLUSIONS)
}
PRIVATE_TABLES: tuple[str, ...] = tuple(n for n, t in TABLES.items() if t.private)
PUBLIC_TABLES: tuple[str, ...] = tuple(n for n, t in TABLES.items() if not t.private)


def table(name: str) -> Table:
    """Look a table up by name (``KeyError`` if it is not declared)."""
    return TABLES[name]


def column_classes() -> dict[str, ColumnClass]:
    """Every ``table.column`` and its declared class: the policy's defaults.

    >>> column_classes()["pupils.upn"].value
    'direct_identifier'
    """
    return {f"{t.name}.{c.name}": c.cls for t in TABLES.values() for c in t.columns}
