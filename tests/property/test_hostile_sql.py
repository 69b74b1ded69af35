"""A corpus of hostile and malformed SQL: each is refused with a reason code or rejected as
unusable input; none becomes a plan; arbitrary text never crashes the parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safesetting.engine.parse import parse_query
from safesetting.engine.plan import QueryPlan, Refusal
from safesetting.errors import UsageError
from tests.classify import policy_reasons

HOSTILE = [
    "SELECT COUNT(*) FROM census /* */ WHERE region = 'x'; ATTACH 'y'",
    "SELECT COUNT(*) FROM cеnsus",  # Cyrillic е
    "SELECT COUNT(*) FROM census WHERE ｕｐｎ = 'x'",  # full-width letters
    "SELECT COUNT(*) FROM census WHERE " + "(" * 5000 + "nc_year = 1" + ")" * 5000,
    "SELECT COUNT(*) FROM census WHERE " + " AND ".join(["NOT"] * 3000) + " fsm_eligible",
    'SELECT COUNT(*) FROM "census""; DROP TABLE x; --"',
    "SELECT COUNT(*) FROM census WHERE region = $$x$$",
    "SELECT COUNT(*) FROM census WHERE region = getenv('HOME')",
    "SELECT COUNT(*) FROM census WHERE region = current_setting('memory_limit')",
    "SELECT COUNT(*) FROM census WHERE region = (SELECT upn FROM pupils LIMIT 1)",
    "SELECT COUNT(*) FROM census WHERE EXISTS (SELECT 1 FROM pupils WHERE upn = 'A')",
    "SELECT COUNT(*) FROM census, pupils",
    "SELECT COUNT(*) FROM census CROSS JOIN pupils",
    "SELECT COUNT(*) FROM census NATURAL JOIN pupils",
    "SELECT COUNT(*) FROM census POSITIONAL JOIN pupils",
    "SELECT COUNT(*) FROM census ASOF JOIN absence USING (pupil_id, academic_year)",
    "SELECT COUNT(*) FROM census ANTI JOIN ks2 USING (pupil_id)",
    "SELECT COUNT(*) FROM census SEMI JOIN ks2 USING (pupil_id)",
    "SELECT COUNT(*) FROM census USING SAMPLE 10%",
    "SELECT COUNT(*) FROM census TABLESAMPLE 1",
    "SELECT COUNT(*) FROM census PIVOT (COUNT(*) FOR region IN ('x'))",
    "SELECT COUNT(*) FILTER (WHERE fsm_eligible) FROM census",
    "SELECT COUNT(*) FROM census GROUP BY ALL",
    "SELECT COUNT(*) FROM census QUALIFY 1",
    "SELECT list(upn) FROM pupils",
    "SELECT string_agg(surname, ',') FROM pupils",
    "SELECT arg_max(upn, pupil_id) FROM pupils",
    "SELECT any_value(upn) FROM pupils",
    "SELECT AVG(read_score * 1e300) FROM ks2",
    "SELECT SUM(CASE WHEN upn > 'A' THEN 1 ELSE 0 END) FROM pupils",
    "EXPLAIN SELECT COUNT(*) FROM census",
    "DESCRIBE census",
    "SHOW TABLES",
    "CALL pragma_version()",
    "CHECKPOINT",
    "EXPORT DATABASE 'x'",
    "LOAD httpfs",
    "CREATE TABLE x AS SELECT * FROM pupils",
    "INSERT INTO census VALUES (1)",
    "UPDATE census SET region = 'x'",
    "DELETE FROM census",
    "DROP TABLE census",
    "SELECT COUNT(*) FROM census WHERE region = 'x'\x00",
    "SELECT COUNT(*) FROM census WHERE region = 'x' COLLATE nocase",
    "SELECT COUNT(*) FROM census WHERE region SIMILAR TO 'x'",
    "SELECT COUNT(*) FROM census WHERE nc_year = 1 + 1",
]


@pytest.mark.parametrize("sql", HOSTILE)
def test_hostile_sql_never_becomes_a_plan(sql):
    try:
        result = parse_query(sql)
    except UsageError:
        return
    assert isinstance(result, Refusal), sql
    assert result.reasons
    assert all(r.code and r.message for r in result.reasons)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_or_rejected_never_a_crash(text):
    try:
        result = parse_query(text)
    except UsageError as exc:
        result = exc  # unusable input: one line naming the problem, nothing else raised
    assert isinstance(result, Refusal | QueryPlan | UsageError)
    if isinstance(result, UsageError):
        assert "\n" not in result.message


_TOKENS = st.sampled_from(
    ["SELECT", "COUNT(*)", "SUM(", "read_score", ")", "FROM", "ks2", "pupils", "upn", "WHERE",
     "=", "'x'", "1", ",", "GROUP BY", "JOIN", "USING (pupil_id)", "(", "AND", "OR", "NOT", ";",
     "*", "--", "/*", "*/", "read_csv('x')", "UNION", "LIMIT", "OVER ()", "CAST(", "AS INTEGER"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, min_size=1, max_size=25))
def test_sql_shaped_noise_never_lets_an_identifier_through(tokens):
    sql = " ".join(tokens)
    try:
        result = parse_query(sql)
    except UsageError:
        return
    # The parser reports every identifier it meets, and the policy refuses each misuse.
    misused = "pupils.upn" in result.usage or any(
        c.endswith(".pupil_id") and not u <= {"join_key", "count_distinct"}
        for c, u in result.usage.items()
    )
    if misused:
        assert "direct_identifier" in {r.code for r in policy_reasons(result)}
