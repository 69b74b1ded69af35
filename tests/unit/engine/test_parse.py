"""The parser: deny by default, every reason that applies, identifiers wherever they hide."""

from __future__ import annotations

import pytest

from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.plan import QueryPlan, Refusal
from safesetting.errors import UsageError
from tests.classify import codes as classified


def codes(sql: str) -> set[str]:
    result = parse_query(sql)
    assert isinstance(result, Refusal), f"expected a refusal for {sql!r}"
    return {r.code for r in result.reasons}


def plan(sql: str, **kw) -> QueryPlan:
    result = parse_query(sql, Catalogue(**kw) if kw else None)
    assert isinstance(result, QueryPlan), getattr(result, "reasons", None)
    return result


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM pupils", "select_star"),
        ("SELECT pupils.* FROM pupils", "select_star"),
        ("SELECT region FROM census", "bare_column"),
        ("SELECT region, COUNT(*) FROM census", "bare_column"),
        ("SELECT COUNT(*) FROM census; DROP TABLE census", "multiple_statements"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("COPY census TO 'out.csv'", "not_a_query"),
        ("ATTACH 'x.duckdb' AS x", "not_a_query"),
        ("INSTALL httpfs", "not_a_query"),
        ("PRAGMA database_list", "not_a_query"),
        ("SET enable_external_access = true", "not_a_query"),
        ("SELECT COUNT(*) FROM read_csv('/etc/passwd')", "table_function"),
        ("SELECT COUNT(*) FROM '/etc/passwd'", "unknown_table"),
        ("SELECT COUNT(*) FROM census WHERE read_blob('npd.duckdb') IS NULL", "table_function"),
        ("SELECT COUNT(*) FROM nosuch", "unknown_table"),
        ("SELECT COUNT(*) FROM src.main.census", "unknown_table"),
        ("SELECT COUNT(*) FROM census WHERE nosuch = 1", "unknown_column"),
        ("SELECT COUNT(*) FROM (SELECT pupil_id FROM census) t", "subquery"),
        ("WITH t AS (SELECT pupil_id FROM census) SELECT COUNT(*) FROM t", "subquery"),
        ("SELECT COUNT(*) FROM census UNION SELECT COUNT(*) FROM ks2", "subquery"),
        ("SELECT COUNT(*) OVER () FROM census", "window_function"),
        ("SELECT MAX(read_score) FROM ks2", "unsupported_aggregate"),
        ("SELECT MIN(read_score) FROM ks2", "unsupported_aggregate"),
        ("SELECT COUNT(*) FROM census GROUP BY academic_year HAVING COUNT(*) < 5", "having"),
        ("SELECT COUNT(*) FROM census LIMIT 1", "limit"),
        ("SELECT DISTINCT region FROM census", "distinct"),
        ("SELECT SUM(attainment8) / COUNT(*) FROM ks4", "unsupported_expression"),
        ("SELECT COUNT(*) FROM census LEFT JOIN ks2 USING (pupil_id)", "unsupported_join"),
        (
            "SELECT COUNT(*) FROM census JOIN ks2 ON census.region = ks2.writing_ta",
            "unsupported_join",
        ),
        (
            "SELECT COUNT(*) FROM census JOIN schools ON census.la_code = schools.la_code",
            "unsupported_join",
        ),
        ("SELECT COUNT(*) FROM census JOIN census USING (pupil_id)", "unsupported_join"),
        ("SELECT COUNT(*) FROM local_authorities", "unknown_table"),
        ("SELECT SUM(attainment8) FROM ks4 GROUP BY attainment8", "no_public_domain"),
        ("SELECT SUM(rwm_expected) FROM ks2", "unbounded_argument"),
        ("SELECT COUNT(*) FROM census WHERE la_code LIKE '2%'", "unsupported_expression"),
        ("SELECT COUNT(*) FROM census WHERE region = la_code", "unsupported_expression"),
        ("SELECT COUNT(DISTINCT region) FROM census", "unsupported_aggregate"),
        ("SELECT COUNT(*)", "unknown_table"),
        ("SELECT COUNT(*) FROM ks2 WHERE ks2.nosuch = 1", "unknown_column"),
        (
            "SELECT COUNT(*) FROM census JOIN absence USING (pupil_id) WHERE academic_year = 1",
            "ambiguous_column",
        ),
    ],
)
def test_refusal_codes(sql, code):
    assert code in codes(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT upn, COUNT(*) FROM pupils GROUP BY upn",
        "SELECT COUNT(*) FROM pupils WHERE surname = 'Smith'",
        "SELECT COUNT(*) FROM pupils WHERE forename IN ('Ann', 'Bob')",
        "SELECT COUNT(*) FROM census WHERE pupil_id = 42",
        "SELECT COUNT(*) FROM census WHERE pupil_id BETWEEN 1 AND 10",
        "SELECT SUM(length(upn)) FROM pupils",
        "SELECT SUM(CASE WHEN postcode = 'SW1A 1AA' THEN 1 ELSE 0 END) FROM pupils",
        "SELECT AVG(CAST(pupil_id AS INTEGER)) FROM census",
        "SELECT COUNT(upn) FROM pupils",
        "SELECT date_of_birth, COUNT(*) FROM pupils GROUP BY date_of_birth",
        "SELECT COUNT(*) FROM census JOIN pupils USING (pupil_id) WHERE pupils.upn = 'A123'",
        "SELECT COUNT(*) FROM census JOIN pupils USING (pupil_id) GROUP BY pupils.postcode",
        "SELECT COUNT(*) FROM pupils p WHERE NOT (p.upn IS NULL)",
        "SELECT SUM(pupil_id) FROM census",
        "SELECT COUNT(*) FROM census WHERE pupil_id IN (1, 2, 3)",
    ],
)
def test_direct_identifiers_are_refused_wherever_they_hide(sql):
    """The parser reports the column and how it is used; decide() refuses it (the service
    asks both, and reports their reasons together)."""
    assert "direct_identifier" in classified(sql)


def test_every_reason_is_reported_not_just_the_first():
    found = classified("SELECT upn, MAX(read_score) FROM pupils JOIN ks2 USING (pupil_id) LIMIT 3")
    assert {"direct_identifier", "unsupported_aggregate", "limit"} <= found


def test_syntax_error_is_unusable_input():
    with pytest.raises(UsageError, match="could not parse"):
        parse_query("SELEC COUNT(* FROM census")


def test_empty_and_oversized_queries_are_unusable_input():
    with pytest.raises(UsageError, match="empty"):
        parse_query("  ;  ")
    with pytest.raises(UsageError, match="longer than"):
        parse_query("SELECT COUNT(*) FROM census WHERE " + " OR ".join(["nc_year = 1"] * 5000))


def test_plan_for_the_fsm_gap_query():
    p = plan(
        "SELECT region, ever_fsm_6 AS disadvantaged, COUNT(*) AS pupils,"
        " AVG(CAST(rwm_expected AS INTEGER)) AS rwm"
        " FROM census JOIN ks2 USING (pupil_id, academic_year)"
        " WHERE academic_year = 2023 GROUP BY region, ever_fsm_6"
    )
    assert p.tables == ("census", "ks2")
    assert p.labels == ["region", "ever_fsm_6", "pupils", "rwm"]
    assert p.n_cells == 9 * 2
    assert p.pinned_years == frozenset({"census"})
    avg = p.aggregates[1]
    assert (avg.func, avg.lower, avg.upper) == ("avg", 0.0, 1.0)
    assert p.usage["ks2.rwm_expected"] == frozenset({"aggregate"})
    assert "join_key" in p.usage["census.pupil_id"]


def test_group_keys_release_their_whole_public_domain():
    p = plan("SELECT sen_provision, COUNT(*) FROM census GROUP BY 1")
    assert [g[0] for g in p.groups()] == ["N", "K", "E"]


def test_case_and_arithmetic_arguments_have_catalogue_bounds():
    p = plan(
        "SELECT SUM(CASE WHEN persistent_absentee THEN 1 ELSE 0 END) AS pa,"
        " SUM(sessions_authorised + sessions_unauthorised) AS missed,"
        " AVG(2 * maths_grade) FROM absence JOIN ks4 USING (pupil_id)"
    )
    bounds = [(a.lower, a.upper) for a in p.aggregates]
    assert bounds == [(0.0, 1.0), (0.0, 800.0), (0.0, 18.0)]


def test_real_valued_arguments_count_in_hundredths():
    p = plan("SELECT AVG(attainment8) FROM ks4")
    assert p.aggregates[0].resolution == 0.01


def test_same_meaning_same_normalised_text():
    a = plan("select REGION, count(*) from CENSUS where academic_year=2023 group by region")
    b = plan("SELECT c.region, COUNT(*) FROM census AS c WHERE 2023 = c.academic_year GROUP BY 1")
    assert a.normalised() == b.normalised()
    assert a.digest() != plan("SELECT region, COUNT(*) FROM census GROUP BY region").digest()


def test_an_aggregate_filter_is_refused_with_what_to_write_instead():
    refusal = parse_query("SELECT COUNT(*) FILTER (WHERE fsm_eligible) FROM census")
    (reason,) = refusal.reasons
    assert reason.code == "unsupported_expression"
    assert "SUM(CASE WHEN" in reason.message
    assert "arithmetic" not in reason.message


def test_too_many_cells_is_refused():
    assert "too_many_cells" in codes(
        "SELECT la_code, ethnicity_minor, nc_year, COUNT(*) FROM census"
        " GROUP BY la_code, ethnicity_minor, nc_year"
    )


def test_group_by_school_uses_the_reference_domain():
    p = plan(
        "SELECT urn, COUNT(*) FROM census GROUP BY urn", ref_domains={"schools.urn": (1, 2, 3)}
    )
    assert p.n_cells == 3


def test_every_refusal_code_is_in_the_reason_registry():
    import re
    from pathlib import Path

    from policies.reasons import REASON_CODES, VARIANTS, describe

    engine = Path(__file__).resolve().parents[3] / "safesetting" / "engine"
    text = "".join(p.read_text() for p in engine.glob("*.py"))
    keys = set(re.findall(r'(?:refuse|LiteralError|JoinError)\(\s*"([a-z_.]+)"', text))
    assert len(keys) > 60
    assert {"type_mismatch.wanted", "value_not_in_domain.nearest", "unsupported_join.self"} <= keys
    for key in keys:
        assert describe(key)  # KeyError if a code or variant is not registered
    # Every variant's code is a registered code, and every variant is used by the engine.
    assert {key.partition(".")[0] for key in VARIANTS} <= set(REASON_CODES)
    assert set(VARIANTS) <= keys


def test_the_engine_writes_no_refusal_text_of_its_own():
    """Codes and messages cannot drift: every refusal is built from the registry, so no
    engine module passes a message string (or an f-string) next to a code."""
    import re
    from pathlib import Path

    engine = Path(__file__).resolve().parents[3] / "safesetting" / "engine"
    for module in engine.glob("*.py"):
        text = module.read_text()
        assert not re.search(r'(?:refuse|LiteralError|JoinError)\(\s*"[^"]*",\s*f?"', text), module
        assert not re.search(r"Reason\(\s*\"", text), module
