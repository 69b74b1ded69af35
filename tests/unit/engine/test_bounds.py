"""Contribution bounds, sensitivities and intervals against hand-derived values.

Every row here was worked out by hand from the schema: census has one row per pupil and
year (20 years in the domain), absence likewise, exclusions up to six a year (120 in all),
KS2 and KS4 one row per pupil; public tables join many-to-one. Tables whose bound is above
1 are the point: a mistake that takes a product for a maximum, or a per-year bound of 6 for
1, changes a number below.
"""

from __future__ import annotations

import pytest

from safesetting.engine.bounds import Interval, contribution_bound, per_year_rows, year_components
from safesetting.engine.compile import plan_bound
from safesetting.engine.noise import sensitivity
from safesetting.engine.parse import parse_query
from safesetting.engine.plan import Aggregate, QueryPlan
from synthetic.schema import TABLES, YEARS


def plan(sql: str) -> QueryPlan:
    parsed = parse_query(sql)
    assert isinstance(parsed, QueryPlan), getattr(parsed, "reasons", None)
    return parsed


def test_the_schema_is_as_these_tables_assume():
    assert len(YEARS) == 20
    assert per_year_rows(TABLES["exclusions"]) == 6
    assert TABLES["exclusions"].max_rows_per_pupil == 120
    assert TABLES["census"].max_rows_per_pupil == TABLES["absence"].max_rows_per_pupil == 20
    assert TABLES["ks2"].max_rows_per_pupil == TABLES["ks4"].max_rows_per_pupil == 1


# (query, natural bound, bound the noise uses, truncated?)
BOUNDS = [
    ("SELECT COUNT(*) FROM ks2", 1, 1, False),
    ("SELECT COUNT(*) FROM pupils", 1, 1, False),
    ("SELECT COUNT(*) FROM census", 20, 20, False),
    ("SELECT COUNT(*) FROM census WHERE academic_year = 2023", 1, 1, False),
    ("SELECT COUNT(*) FROM census WHERE academic_year = 2023 OR nc_year = 1", 20, 20, False),
    ("SELECT COUNT(*) FROM census WHERE academic_year IN (2023)", 20, 20, False),
    ("SELECT COUNT(*) FROM census WHERE NOT academic_year = 2023", 20, 20, False),
    ("SELECT COUNT(*) FROM exclusions", 120, 20, True),
    ("SELECT COUNT(*) FROM exclusions WHERE academic_year = 2020", 6, 6, False),
    ("SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id)", 20, 20, False),
    ("SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id, academic_year)", 1, 1, False),
    ("SELECT COUNT(*) FROM census JOIN absence USING (pupil_id)", 400, 20, True),
    ("SELECT COUNT(*) FROM census JOIN absence USING (pupil_id, academic_year)", 20, 20, False),
    ("SELECT COUNT(*) FROM census JOIN exclusions USING (pupil_id, academic_year)", 120, 20, True),
    (
        "SELECT COUNT(*) FROM census JOIN exclusions USING (pupil_id, academic_year)"
        " WHERE census.academic_year = 2020",
        6, 6, False,
    ),
    (
        "SELECT COUNT(*) FROM census JOIN exclusions USING (pupil_id)"
        " WHERE census.academic_year = 2020",
        120, 20, True,
    ),
    (
        "SELECT COUNT(*) FROM census JOIN exclusions USING (pupil_id)"
        " WHERE census.academic_year = 2020 AND exclusions.academic_year = 2021",
        6, 6, False,
    ),
    (
        "SELECT COUNT(*) FROM exclusions e JOIN absence a ON a.pupil_id = e.pupil_id"
        " AND a.academic_year = e.academic_year WHERE a.academic_year = 2019",
        6, 6, False,
    ),
    (
        "SELECT COUNT(*) FROM ks2 JOIN ks4 USING (pupil_id) JOIN pupils USING (pupil_id)",
        1, 1, False,
    ),
    ("SELECT COUNT(*) FROM ks2 JOIN exclusions USING (pupil_id)", 120, 20, True),
    (
        "SELECT COUNT(*) FROM ks2 JOIN exclusions USING (pupil_id)"
        " WHERE exclusions.academic_year = 2020",
        6, 6, False,
    ),
    # a table joined to itself multiplies like any other pupil table
    ("SELECT COUNT(*) FROM census a JOIN census b USING (pupil_id)", 400, 20, True),
    (
        "SELECT COUNT(*) FROM census a JOIN census b USING (pupil_id) WHERE a.academic_year = 2020",
        20, 20, False,
    ),
    (
        "SELECT COUNT(*) FROM census a JOIN census b USING (pupil_id)"
        " WHERE a.academic_year = 2020 AND b.academic_year = 2023",
        1, 1, False,
    ),
    (
        "SELECT COUNT(*) FROM exclusions a JOIN exclusions b ON a.pupil_id = b.pupil_id"
        " AND a.academic_year = b.academic_year WHERE b.academic_year = 2021",
        36, 20, True,
    ),
    # public tables join many-to-one: the bound is unchanged
    ("SELECT COUNT(*) FROM census JOIN schools USING (urn)", 20, 20, False),
    (
        "SELECT COUNT(*) FROM census c JOIN schools s ON s.urn = c.urn"
        " JOIN local_authorities l ON l.la_code = s.la_code WHERE c.academic_year = 2020",
        1, 1, False,
    ),
    ("SELECT COUNT(*) FROM ks4 JOIN pupils USING (pupil_id) JOIN local_authorities USING"
     " (la_code)", 1, 1, False),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "natural", "rows", "truncate"), BOUNDS)
def test_contribution_bounds(sql, natural, rows, truncate):
    bound = plan_bound(plan(sql))
    assert (bound.natural, bound.rows, bound.truncate) == (natural, rows, truncate)


def test_the_truncation_cap_is_a_parameter():
    bound = plan_bound(plan("SELECT COUNT(*) FROM census"), cap=5)
    assert (bound.natural, bound.rows, bound.truncate) == (20, 5, True)
    bound = plan_bound(plan("SELECT COUNT(*) FROM census"), cap=20)
    assert bound.truncate is False


def test_year_joined_groups_take_the_smallest_product():
    # census (20 total, 1 a year) with exclusions (120 total, 6 a year), joined on the year:
    # min(20 x 6, 120 x 1) = 120; absence added to the group: min over each table of its
    # total times the others' per-year rows = min(20*6*1, 120*1*1, 20*1*6) = 120.
    nodes = {"c": "census", "e": "exclusions", "a": "absence"}
    assert contribution_bound(nodes, [("c", "e"), ("e", "a")], frozenset(), cap=1000).natural == 120
    assert contribution_bound(nodes, [("c", "e")], frozenset(), cap=10_000).natural == 2400
    assert contribution_bound(nodes, [("c", "e")], frozenset({"a"}), cap=10_000).natural == 120
    assert sorted(map(sorted, year_components([("c", "e"), ("e", "a")]))) == [["a", "c", "e"]]


# (aggregate, part, bound, groups) -> L1 sensitivity (symmetric distance for quantiles)
SENSITIVITIES = [
    (Aggregate("count", "n"), "value", 1, 9, 1),
    (Aggregate("count", "n"), "value", 6, 9, 6),
    (Aggregate("count", "n"), "value", 20, 1, 20),
    (Aggregate("count_distinct", "n"), "value", 20, 3, 3),
    (Aggregate("count_distinct", "n"), "value", 6, 40, 6),
    (Aggregate("count_distinct", "n"), "value", 1, 1, 1),
    (Aggregate("sum", "s", None, 80, 120), "value", 1, 5, 120),
    (Aggregate("sum", "s", None, 80, 120), "value", 6, 5, 720),
    (Aggregate("sum", "s", None, -20, 20), "value", 3, 5, 60),
    (Aggregate("sum", "s", None, -480, -320), "value", 2, 5, 960),
    (Aggregate("sum", "s", None, 0, 90, 0.01), "value", 1, 2, 9_000),
    (Aggregate("sum", "s", None, 0, 90, 0.01), "value", 20, 2, 180_000),
    (Aggregate("sum", "s", None, 0, 0.5, 0.01), "value", 4, 2, 200),
    (Aggregate("sum", "s", None, 0, 0), "value", 4, 2, 4),
    (Aggregate("avg", "a", None, 1, 90), "value", 6, 2, 540),
    (Aggregate("avg", "a", None, 1, 90), "count", 6, 2, 6),
    (Aggregate("avg", "a", None, 0, 90, 0.01), "count", 20, 2, 20),
    (Aggregate("quantile", "q", None, 0, 90, 1.0, 0.5), "values", 6, 2, 6),
    (Aggregate("quantile", "q", None, 0, 90, 1.0, 0.5), "values", 1, 2, 1),
]


@pytest.mark.parametrize(("agg", "part", "bound", "groups", "expected"), SENSITIVITIES)
def test_sensitivities(agg, part, bound, groups, expected):
    assert sensitivity(agg, part, bound, groups) == expected


def test_sensitivity_of_a_real_query_on_a_table_whose_bound_is_six():
    p = plan(
        "SELECT reason, COUNT(*), COUNT(DISTINCT pupil_id), SUM(sessions), AVG(sessions),"
        " MEDIAN(sessions) FROM exclusions WHERE academic_year = 2020 GROUP BY reason"
    )
    bound = plan_bound(p).rows
    assert bound == 6
    n = len(p.groups())
    got = [
        sensitivity(a, part, bound, n)
        for a, part in [
            (p.aggregates[0], "value"),
            (p.aggregates[1], "value"),
            (p.aggregates[2], "value"),
            (p.aggregates[3], "value"),
            (p.aggregates[3], "count"),
            (p.aggregates[4], "values"),
        ]
    ]
    assert got == [6, 6, 540, 540, 6, 6]  # fmt: skip


# (argument, lower, upper, whole numbers?)
INTERVALS = [
    ("read_score", 80, 120, True),
    ("(read_score + maths_score) * 2", 320, 480, True),
    ("2 * (read_score - maths_score)", -80, 80, True),
    ("read_score - 100", -20, 20, True),
    ("-(read_score)", -120, -80, True),
    ("read_score * -1", -120, -80, True),
    ("read_score * 0.5", 40, 60, False),
    ("CAST(read_score * 0.5 AS INTEGER)", 40, 60, True),
    ("CAST(rwm_expected AS INTEGER)", 0, 1, True),
    ("rwm_expected::INT", 0, 1, True),
    ("CAST(read_score AS DOUBLE)", 80, 120, False),
    ("CASE WHEN rwm_expected THEN read_score ELSE 0 END", 0, 120, True),
    ("CASE WHEN rwm_expected THEN 1 END", 1, 1, True),
    ("CASE WHEN rwm_expected THEN 2 WHEN read_score > 100 THEN -3 ELSE 0.5 END", -3, 2, False),
    ("read_score + 0.5", 80.5, 120.5, False),
    ("0.5 + read_score", 80.5, 120.5, False),
    ("read_score - 0.5", 79.5, 119.5, False),
    ("CAST(read_score AS DOUBLE) + 1", 81, 121, False),
    ("-(read_score * 0.5)", -60, -40, False),
    ("CASE WHEN rwm_expected THEN 0.5 END", 0.5, 0.5, False),
]


@pytest.mark.parametrize(("arg", "lower", "upper", "integral"), INTERVALS)
def test_interval_of_each_argument_form(arg, lower, upper, integral):
    agg = plan(f"SELECT SUM({arg}) FROM ks2").aggregates[0]
    assert (agg.lower, agg.upper) == (lower, upper)
    assert (agg.resolution == 1.0) is integral


def test_interval_arithmetic():
    a, b = Interval(80, 120), Interval(-3, 2)
    assert a + b == Interval(77, 122)
    assert a - b == Interval(78, 123)
    assert -b == Interval(-2, 3)
    assert a.scale(-0.5) == Interval(-60, -40, False)
    assert a.hull(b) == Interval(-3, 120)
    assert Interval(-2.5, 2.5, False).rounded() == Interval(-3, 3, True)
    assert Interval(0.4, 0.6, False).rounded() == Interval(0, 1, True)
    assert Interval(-0.6, -0.4, False).rounded() == Interval(-1, 0, True)
    assert (a + Interval(0, 0.5, False)).integral is False
    assert (Interval(0, 0.5, False) - a).integral is False
    assert a.scale(2).integral
    assert not a.scale(1.5).integral
    assert Interval(-7, 5).magnitude == 7


@pytest.mark.parametrize(
    ("arg", "fits"),
    [
        ("CAST(read_score + 7 AS TINYINT)", True),  # up to 127 exactly
        ("CAST(read_score + 8 AS TINYINT)", False),
        ("CAST(read_score - 208 AS TINYINT)", True),  # down to -128 exactly
        ("CAST(read_score - 209 AS TINYINT)", False),
    ],
)
def test_a_narrowing_cast_is_accepted_exactly_when_its_type_holds_the_interval(arg, fits):
    result = parse_query(f"SELECT SUM({arg}) FROM ks2")
    assert isinstance(result, QueryPlan) is fits
