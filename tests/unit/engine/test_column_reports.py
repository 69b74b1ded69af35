"""The parser reports every column a query uses and how; ``decide()`` alone classifies.

A researcher trying to use an identifier (``pupil_id``, ``upn``, names, postcode, date of
birth) or a quasi-identifier in fine form (``urn``, ``sex``, home ``la_code``) through any
shape the parser accepts, or hides it where the parser cannot place it, is refused: by the
policy for the column's class, on top of whatever the parser refuses for the shape.
"""

from __future__ import annotations

import pytest

from safesetting.engine import parse
from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.plan import QueryPlan, Refusal
from tests.classify import codes

URNS = Catalogue(ref_domains={"schools.urn": (100001, 100002, 100003)})

DIRECT = {
    # CASE: in the condition, in the value
    "case condition": "SELECT SUM(CASE WHEN pupil_id < 1000 THEN 1 ELSE 0 END) FROM census",
    "case is null": "SELECT SUM(CASE WHEN upn IS NULL THEN 1 END) FROM pupils",
    "case second branch": "SELECT SUM(CASE WHEN sex = 'F' THEN 1 WHEN forename IS NULL THEN 2 "
    "END) FROM pupils",
    "case through a join": "SELECT SUM(CASE WHEN p.postcode IS NULL THEN 0 ELSE 1 END) "
    "FROM census JOIN pupils p USING (pupil_id)",
    "case value": "SELECT SUM(CASE WHEN fsm_eligible THEN pupil_id ELSE 0 END) FROM census",
    # casts
    "cast to double": "SELECT SUM(CAST(pupil_id AS DOUBLE)) FROM census",
    "cast text": "SELECT AVG(CAST(upn AS INTEGER)) FROM pupils",
    "cast a date": "SELECT SUM(CAST(date_of_birth AS BIGINT)) FROM pupils",
    "cast in a filter": "SELECT COUNT(*) FROM pupils WHERE CAST(upn AS INTEGER) = 1",
    "cast a comparison": "SELECT SUM(CAST(date_of_birth > '2010-01-01' AS INTEGER)) FROM pupils",
    "try_cast": "SELECT COUNT(*) FROM pupils WHERE TRY_CAST(upn AS INT) IS NULL",
    # arithmetic
    "times zero": "SELECT SUM(pupil_id * 0) FROM census",
    "added to a score": "SELECT SUM(read_score + 0 * pupil_id) FROM ks2",
    "negated": "SELECT AVG(-pupil_id) FROM census",
    "subtracted from itself": "SELECT SUM(pupil_id - pupil_id) FROM census",
    # filters, ranges included
    "between": "SELECT COUNT(*) FROM census WHERE pupil_id BETWEEN 1 AND 10",
    "a range of two": "SELECT COUNT(*) FROM census WHERE pupil_id >= 5 AND pupil_id < 6",
    "value first": "SELECT COUNT(*) FROM census WHERE 42 = pupil_id",
    "in a list": "SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id) WHERE pupil_id IN (1, 2)",
    "a date range": "SELECT COUNT(*) FROM pupils WHERE date_of_birth < '2010-01-01'",
    "a name range": "SELECT COUNT(*) FROM pupils WHERE surname > 'M'",
    "not null": "SELECT COUNT(*) FROM pupils WHERE NOT postcode IS NULL",
    "or'd with a coarse filter": "SELECT COUNT(*) FROM pupils WHERE sex = 'F' OR upn IS NULL",
    "bracketed": "SELECT COUNT(*) FROM pupils WHERE (upn) IS NULL",
    "compared with itself": "SELECT COUNT(*) FROM pupils WHERE upn = upn",
    "quoted and upper case": 'SELECT COUNT(*) FROM pupils WHERE "UPN" IS NULL',
    # joins
    "a join on an identifier": "SELECT COUNT(*) FROM pupils a JOIN pupils b USING (upn)",
    "a join on postcodes": "SELECT COUNT(*) FROM pupils a JOIN pupils b ON a.postcode = b.postcode",
    "a join key filtered": "SELECT COUNT(*) FROM census JOIN ks2 ON census.pupil_id = "
    "ks2.pupil_id WHERE ks2.pupil_id = 7",
    "a joined table's date": "SELECT COUNT(*) FROM census c JOIN pupils p ON p.pupil_id = "
    "c.pupil_id WHERE p.date_of_birth IS NULL",
    # counts
    "count distinct upn": "SELECT COUNT(DISTINCT upn) FROM pupils",
    "count distinct names": "SELECT COUNT(DISTINCT surname) FROM pupils",
    "count upn": "SELECT COUNT(upn) FROM pupils",
    "count pupil_id": "SELECT COUNT(pupil_id) FROM census",
    # aliases and self-joins
    "a select alias grouped": "SELECT x.upn AS u, COUNT(*) FROM pupils x GROUP BY u",
    "an alias named like a quasi-identifier": "SELECT upn AS sex, COUNT(*) FROM pupils "
    "GROUP BY sex",
    "a table alias named like another table": "SELECT COUNT(*) FROM pupils AS census_x "
    "WHERE census_x.forename IS NULL",
    "a self-join's copy": "SELECT COUNT(*) FROM pupils p1 JOIN pupils p2 USING (pupil_id) "
    "WHERE p2.upn IS NULL",
    "a self-join grouped by the unit": "SELECT p2.pupil_id, COUNT(*) FROM census p1 "
    "JOIN census p2 USING (pupil_id) GROUP BY p2.pupil_id",
    "grouped by position": "SELECT postcode, COUNT(*) FROM pupils GROUP BY 1",
    # where the parser cannot place it: reported from the clause it sits in
    "a function in a filter": "SELECT COUNT(*) FROM pupils WHERE length(surname) > 8",
    "like": "SELECT COUNT(*) FROM pupils WHERE upn LIKE 'K8%'",
    "a date part": "SELECT COUNT(*) FROM pupils WHERE year(date_of_birth) = 2010",
    "a hash in an aggregate": "SELECT SUM(hash(upn) % 2) FROM pupils",
    "coalesce": "SELECT COUNT(*) FROM pupils WHERE COALESCE(upn, 'x') = 'x'",
    "order by": "SELECT COUNT(*) FROM pupils ORDER BY upn",
    "having": "SELECT sex, COUNT(*) FROM pupils GROUP BY sex HAVING MIN(surname) > 'M'",
    "a window": "SELECT COUNT(*) OVER (PARTITION BY upn) FROM pupils",
    "a subquery": "SELECT COUNT(*) FROM pupils WHERE upn IN (SELECT upn FROM pupils)",
    "a struct field of a column": "SELECT COUNT(*) FROM pupils WHERE pupils.upn.x IS NULL",
    "a struct field, unqualified": "SELECT COUNT(*) FROM pupils WHERE upn.x IS NULL",
    "a struct field, deeper": "SELECT COUNT(*) FROM pupils p WHERE p.upn.x.y IS NULL",
    "a field of a bracketed column": "SELECT COUNT(*) FROM pupils WHERE (upn).x IS NULL",
    "an element of a column": "SELECT COUNT(*) FROM pupils WHERE upn[1] = 'x'",
}

QUASI = {
    "a range": "SELECT COUNT(*) FROM census WHERE urn < 100003",
    "between": "SELECT COUNT(*) FROM census WHERE urn BETWEEN 100001 AND 100002",
    "a negated range": "SELECT COUNT(*) FROM census WHERE NOT (urn >= 100002)",
    "a range in CASE": "SELECT SUM(CASE WHEN urn > 100001 THEN 1 ELSE 0 END) FROM census",
    "a text range": "SELECT COUNT(*) FROM pupils WHERE sex > 'F'",
    "a text range in CASE": "SELECT SUM(CASE WHEN sex < 'M' THEN 1 END) FROM pupils",
    "a code range": "SELECT COUNT(*) FROM pupils WHERE la_code >= '301'",
    "or'd with a coarse filter": "SELECT COUNT(*) FROM pupils WHERE sex IN ('F') OR "
    "la_code > '301'",
    "averaged": "SELECT AVG(urn) FROM census",
    "cast and summed": "SELECT SUM(CAST(urn AS DOUBLE)) FROM census",
    "counted": "SELECT COUNT(urn) FROM census",
    "counted distinct": "SELECT COUNT(DISTINCT urn) FROM census",
    "in a function": "SELECT COUNT(*) FROM census WHERE length(CAST(urn AS VARCHAR)) = 6",
    "aliased and grouped": "SELECT c.urn AS school, COUNT(*) FROM census c WHERE c.urn < 100002 "
    "GROUP BY school",
    "a self-join's copy": "SELECT COUNT(*) FROM census c1 JOIN census c2 USING (pupil_id, "
    "academic_year) WHERE c2.urn > 100001",
    # a join key's public twin holds the same value in every joined row
    "through the school it joins": "SELECT COUNT(*) FROM census JOIN schools ON schools.urn = "
    "census.urn WHERE schools.urn < 100003",
    "through the school, by USING": "SELECT COUNT(*) FROM census c JOIN schools s USING (urn) "
    "WHERE s.urn BETWEEN 100001 AND 100002",
    "through the home LA it joins": "SELECT COUNT(*) FROM pupils JOIN local_authorities USING "
    "(la_code) WHERE local_authorities.la_code > '301'",
    "through a chain": "SELECT COUNT(*) FROM census c JOIN pupils p USING (pupil_id) "
    "JOIN local_authorities l ON l.la_code = p.la_code WHERE l.la_code < '400'",
}

COARSE = {
    "grouped": "SELECT sex, COUNT(*) FROM pupils GROUP BY sex",
    "equal": "SELECT COUNT(*) FROM pupils WHERE sex = 'F'",
    "not equal and in": "SELECT COUNT(*) FROM pupils WHERE sex <> 'F' AND la_code IN "
    "('301', '302')",
    "a school grouped on its public list": "SELECT urn, COUNT(*) FROM census WHERE urn IN "
    "(100001, 100002) GROUP BY urn",
    "counted pupils": "SELECT COUNT(DISTINCT pupil_id) FROM census",
    "a school's public attributes": "SELECT s.phase, COUNT(*) FROM census JOIN schools s "
    "USING (urn) GROUP BY s.phase",
    "the school's own key, grouped": "SELECT s.urn, COUNT(*) FROM census JOIN schools s "
    "ON s.urn = census.urn GROUP BY s.urn",
    "in CASE, coarse": "SELECT SUM(CASE WHEN sex = 'F' THEN read_score END) FROM pupils "
    "JOIN ks2 USING (pupil_id)",
    "the home LA's region": "SELECT l.region, COUNT(*) FROM pupils JOIN local_authorities l "
    "USING (la_code) GROUP BY l.region",
}


@pytest.mark.parametrize("sql", DIRECT.values(), ids=DIRECT.keys())
def test_a_direct_identifier_is_refused_in_every_shape(sql):
    assert "direct_identifier" in codes(sql, catalogue=URNS)


@pytest.mark.parametrize("sql", QUASI.values(), ids=QUASI.keys())
def test_a_quasi_identifier_in_fine_form_is_refused_in_every_shape(sql):
    assert "quasi_identifier" in codes(sql, catalogue=URNS)


@pytest.mark.parametrize("sql", COARSE.values(), ids=COARSE.keys())
def test_quasi_identifiers_on_their_public_values_and_pupil_counts_are_answered(sql):
    assert codes(sql, catalogue=URNS) == set()


@pytest.mark.parametrize(
    ("sql", "usage", "fine"),
    [
        (
            "SELECT sex, COUNT(upn) FROM pupils WHERE la_code IN ('301') AND nc_year < 6"
            " GROUP BY sex",
            None,  # refused: nc_year is not a column of pupils
            None,
        ),
        (
            "SELECT c.sex, SUM(CASE WHEN k.read_score > 100 THEN 1 END), COUNT(DISTINCT"
            " k.pupil_id) FROM pupils c JOIN ks2 k USING (pupil_id) WHERE c.la_code = '301'"
            " GROUP BY c.sex",
            {
                "pupils.sex": {"group_key"},
                "pupils.la_code": {"filter"},
                "pupils.pupil_id": {"join_key", "count_distinct"},
                "ks2.pupil_id": {"join_key", "count_distinct"},
                "ks2.read_score": {"filter"},
            },
            {"ks2.read_score", "ks2.pupil_id", "pupils.pupil_id"},
        ),
        (
            "SELECT COUNT(*) FROM census WHERE urn IS NULL OR sen_primary_need = 'ASD'",
            {"census.urn": {"filter"}, "census.sen_primary_need": {"filter"}},
            set(),
        ),
        (
            "SELECT AVG(CAST(fsm_eligible AS INTEGER) * 2 + nc_year) FROM census",
            {"census.fsm_eligible": {"aggregate"}, "census.nc_year": {"aggregate"}},
            {"census.fsm_eligible", "census.nc_year"},
        ),
    ],
)
def test_the_plan_reports_every_column_and_how_it_is_used(sql, usage, fine):
    result = parse_query(sql, URNS)
    if usage is None:
        assert isinstance(result, Refusal)
        return
    assert isinstance(result, QueryPlan), result
    assert {c: set(u) for c, u in result.usage.items()} == usage
    assert set(result.fine) == fine


def test_a_refusal_reports_the_columns_it_saw_too():
    """So that the policy's reasons come with the parser's (every reason at once)."""
    result = parse_query("SELECT COUNT(*) FROM pupils WHERE upn LIKE 'K8%' GROUP BY postcode")
    assert isinstance(result, Refusal)
    assert {c: set(u) for c, u in result.usage.items()} == {
        "pupils.upn": {"filter"},
        "pupils.postcode": {"group_key"},
    }
    assert set(result.fine) == {"pupils.upn", "pupils.postcode"}


def test_the_parser_no_longer_classifies():
    """Shape is the parser's, class is the policy's: a query whose shape is sound comes back
    as a plan whatever its columns' classes, and only decide() refuses it."""
    sql = "SELECT COUNT(upn) FROM pupils WHERE pupil_id IS NOT NULL"
    result = parse_query(sql)
    assert isinstance(result, QueryPlan)
    assert {c: set(u) for c, u in result.usage.items()} == {
        "pupils.upn": {"aggregate"},
        "pupils.pupil_id": {"filter"},
    }
    assert codes(sql) == {"direct_identifier"}


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("SELECT COUNT(*) FROM census WHERE pupil_id = 42", "census.pupil_id"),
        ("SELECT COUNT(*) FROM census WHERE pupil_id BETWEEN 1 AND 10", "census.pupil_id"),
        ("SELECT COUNT(*) FROM census WHERE pupil_id IN (1, 2)", "census.pupil_id"),
        ("SELECT SUM(CASE WHEN pupil_id > 7 THEN 1 END) FROM census", "census.pupil_id"),
        ("SELECT COUNT(*) FROM pupils WHERE surname = 'Smith'", "pupils.surname"),
        ("SELECT COUNT(*) FROM pupils WHERE date_of_birth = '2010-01-01'", "pupils.date_of_birth"),
    ],
)
def test_no_value_compared_with_an_identifier_reaches_a_plan(sql, column):
    """A value typed against a column with neither a public list nor a declared range is
    refused by the parser whatever the column's class (the plan, which the audit log keeps
    for an answered query, holds public values only); the column is still reported."""
    result = parse_query(sql)
    assert isinstance(result, Refusal)
    assert {r.code for r in result.reasons} <= {"no_public_domain", "type_mismatch"}
    assert "filter" in result.usage[column]
    assert "direct_identifier" in codes(sql)


def test_a_column_the_walk_forgets_is_refused_not_passed(monkeypatch):
    """Fail closed: were a future shape to resolve a column without reporting its use, the
    final sweep reports it (from its clause, not coarse) and refuses the query."""

    def forgetful(self, node, membership=True):  # noqa: ARG001 - the real signature
        ref = self.column(node)
        if ref is None:
            raise parse.Refused
        return ref

    monkeypatch.setattr(parse._Parser, "filter_column", forgetful)
    result = parse_query("SELECT COUNT(*) FROM census WHERE fsm_eligible")
    assert isinstance(result, Refusal)
    assert [(r.code, r.message) for r in result.reasons] == [
        (
            "unsupported_expression",
            "census.fsm_eligible is used where the engine cannot tell how (only group keys, "
            "filters, join keys and aggregate arguments are)",
        )
    ]
    assert {c: set(u) for c, u in result.usage.items()} == {"census.fsm_eligible": {"filter"}}
    assert set(result.fine) == {"census.fsm_eligible"}


def test_a_literal_shaped_like_an_identifier_stays_the_parsers():
    """Text shaped like a UPN or a postcode never reaches the plan (the audit log keeps
    it), whatever column it meets: that refusal is the parser's, not the policy's."""
    result = parse_query("SELECT COUNT(*) FROM census WHERE region = 'SW1A 1AA'")
    assert isinstance(result, Refusal)
    assert "direct_identifier" in {r.code for r in result.reasons}
    assert "pupils.upn" not in result.usage
