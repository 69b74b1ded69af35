"""Typed plans: every literal is checked against the declared type of the column it meets
(and, for =, <> and IN, its public domain) before anything is spent; the engine's SQL then
compares in the column's own type, so it cannot raise on any data."""

from __future__ import annotations

import re

import duckdb
import pytest

from safesetting.engine.compile import compile_plan
from safesetting.engine.parse import parse_query
from safesetting.engine.plan import QueryPlan, Refusal


def refusal(sql: str) -> dict[str, str]:
    result = parse_query(sql)
    assert isinstance(result, Refusal), f"accepted: {sql}"
    return {r.code: r.message for r in result.reasons}


MISMATCHES = [
    "SELECT COUNT(*) FROM census WHERE sen_primary_need = 5",  # number vs VARCHAR
    "SELECT COUNT(*) FROM census WHERE la_code IN (202, 330)",
    "SELECT COUNT(*) FROM census WHERE nc_year = '6'",  # text vs SMALLINT
    "SELECT COUNT(*) FROM census WHERE academic_year > '2020'",
    "SELECT COUNT(*) FROM census WHERE fsm_eligible = 1",  # number vs BOOLEAN
    "SELECT COUNT(*) FROM census WHERE sen_provision = TRUE",  # boolean vs a code
    "SELECT COUNT(*) FROM census WHERE nc_year = 6.5",  # fraction vs SMALLINT
    "SELECT COUNT(*) FROM census WHERE nc_year < 99999",  # beyond SMALLINT
    "SELECT COUNT(*) FROM census WHERE nc_year BETWEEN 1 AND 1e9",
    "SELECT COUNT(*) FROM ks4 WHERE attainment8 > 'high'",
    "SELECT COUNT(*) FROM ks4 WHERE attainment8 > 1e400",
    "SELECT COUNT(*) FROM census WHERE sen_primary_need = NULL",
    "SELECT COUNT(*) FROM census WHERE nc_year",  # not a yes/no column
    "SELECT SUM(CASE WHEN sen_provision = 1 THEN 1 ELSE 0 END) FROM census",
    "SELECT SUM(CAST(nc_year * 20 AS TINYINT)) FROM census",  # narrowing cast cannot hold it
]


@pytest.mark.parametrize("sql", MISMATCHES)
def test_a_literal_of_another_type_is_refused(sql):
    assert "type_mismatch" in refusal(sql)


def test_the_message_says_what_would_fit():
    message = refusal("SELECT COUNT(*) FROM census WHERE sen_primary_need = 5")["type_mismatch"]
    assert message == (
        "census.sen_primary_need is VARCHAR: compare it with a quoted value such as 'X', not 5"
    )


@pytest.mark.parametrize(
    ("sql", "hint"),
    [
        ("SELECT COUNT(*) FROM census WHERE sen_primary_need = 'ASX'", "'ASD'"),
        ("SELECT COUNT(*) FROM census WHERE nc_year IN (3, 14)", "11, 10, 9"),
        ("SELECT COUNT(*) FROM census WHERE academic_year = 2031", "2025"),
        ("SELECT COUNT(*) FROM census WHERE region <> 'Londn'", "'London'"),
    ],
)
def test_a_value_outside_the_public_domain_is_refused_with_the_nearest(sql, hint):
    message = refusal(sql)["value_not_in_domain"]
    assert hint in message


@pytest.mark.parametrize(
    ("sql", "hint"),
    [
        ("SELECT COUNT(*) FROM census WHERE nc_year >= -5", "from 0 to 11"),
        ("SELECT COUNT(*) FROM census WHERE academic_year > 1000", "from 2006 to 2025"),
        ("SELECT COUNT(*) FROM ks4 WHERE attainment8 < 841200", "from 0 to 90"),
        ("SELECT COUNT(*) FROM census WHERE la_code > '300'", "nearest of its public values"),
        ("SELECT COUNT(*) FROM census WHERE region < 'Adam Harrison'", "nearest"),
    ],
)
def test_every_value_is_a_public_one_so_the_log_never_holds_a_typed_secret(sql, hint):
    """A threshold outside the column's public range, or text that is not one of its public
    values, is refused: what the audit log keeps of a plan is public by construction."""
    assert hint in refusal(sql)["value_not_in_domain"]


def test_text_without_a_public_list_cannot_be_compared():
    message = refusal(
        "SELECT COUNT(*) FROM census JOIN schools USING (urn) WHERE school_name = 'A school'"
    )["no_public_domain"]
    assert "schools.school_name" in message


@pytest.mark.parametrize(
    "text", ["x_V841200012003", "V841200012003_", "B5W  0AE", "b5w0ae", "sw1a-1aa"]
)
def test_identifier_shapes_are_found_however_they_are_joined_or_spaced(text):
    messages = refusal(f"SELECT COUNT(*) FROM census WHERE region = '{text}'")
    assert "direct_identifier" in messages
    assert text not in " ".join(messages.values())


def test_an_identifier_shaped_value_is_never_echoed():
    messages = refusal("SELECT COUNT(*) FROM census WHERE region = 'A123456789012'")
    assert "A123456789012" not in " ".join(messages.values())
    assert "direct_identifier" in messages


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM census WHERE sen_primary_need = 'ASD'",
        "SELECT COUNT(*) FROM census WHERE nc_year = 6.0",  # a whole number, however written
        "SELECT COUNT(*) FROM census WHERE nc_year >= 3",
        "SELECT COUNT(*) FROM census WHERE academic_year > 2006",
        "SELECT COUNT(*) FROM census WHERE fsm_eligible = FALSE",
        "SELECT COUNT(*) FROM ks4 WHERE attainment8 BETWEEN 40 AND 45.5",
        "SELECT COUNT(*) FROM ks4 WHERE attainment8 = 46",
        "SELECT COUNT(*) FROM census WHERE sen_primary_need IS NULL",
        "SELECT COUNT(*) FROM census WHERE 6 = nc_year",
        "SELECT COUNT(*) FROM census WHERE la_code > '301'",
        "SELECT COUNT(*) FROM ks2 WHERE read_score BETWEEN 80 AND 120",
    ],
)
def test_well_typed_literals_are_accepted(sql):
    assert isinstance(parse_query(sql), QueryPlan)


def test_the_engine_compares_in_the_column_type_and_never_casts_a_column():
    """VARCHAR against text, numbers as CAST(literal AS <column type>): on a row whose value
    would not convert, the engine's filter still cannot fail."""
    plan = parse_query(
        "SELECT COUNT(*) FROM census WHERE sen_primary_need = 'ASD' OR nc_year IN (5, 6) "
        "OR academic_year BETWEEN 2019 AND 2020"
    )
    sql = compile_plan(plan).sql
    assert "CAST(5 AS SMALLINT)" in sql
    assert "CAST(2019 AS SMALLINT)" in sql
    assert all(c.isdigit() for c in re.findall(r"CAST\((.)", sql))  # only literals are cast
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE census (pupil_id BIGINT, academic_year SMALLINT, nc_year SMALLINT, "
        "sen_primary_need VARCHAR); CREATE TABLE __optout (pupil_id BIGINT)"
    )
    con.execute("INSERT INTO census VALUES (1, 2020, 6, 'not a number'), (2, 2019, 1, NULL)")
    assert con.execute(sql).fetchall() == [(2,)]


@pytest.mark.parametrize(
    ("value", "domain", "near"),
    [
        (13, tuple(range(12)), [11, 10, 9]),
        (5, (1, 4, 6, 9), [4, 6, 1]),  # a tie goes to the smaller value
        (2031, (2019, 2020, 2021), [2021, 2020, 2019]),
        (7, (5,), [5]),
        ("ASX", ("ASD", "HI", "VI", "MLD"), ["ASD", "VI", "MLD"]),
        ("Londn", ("London", "North East", "South East"), ["London", "South East", "North East"]),
        ("x", (), []),
    ],
)
def test_the_nearest_public_values(value, domain, near):
    from safesetting.engine.types import nearest

    assert nearest(value, domain) == near


def test_messages_name_the_column_the_type_and_the_nearest_values():
    messages = refusal("SELECT COUNT(*) FROM census WHERE nc_year IN (3, 14)")
    assert messages["value_not_in_domain"] == (
        "census.nc_year has no value 14; the nearest of its public values: 11, 10, 9"
    )
    messages = refusal("SELECT COUNT(*) FROM census WHERE fsm_eligible = 'yes'")
    assert messages["type_mismatch"] == (
        "census.fsm_eligible is BOOLEAN: compare it with TRUE or FALSE, not 'yes'"
    )
    messages = refusal("SELECT COUNT(*) FROM census WHERE nc_year = 2.5")
    assert messages["type_mismatch"] == (
        "census.nc_year is SMALLINT: compare it with a whole number from -32768 to 32767, not 2.5"
    )
    messages = refusal("SELECT COUNT(*) FROM ks4 WHERE attainment8 > 'x'")
    assert messages["type_mismatch"] == (
        "ks4.attainment8 is DOUBLE: compare it with a number, not 'x'"
    )
    messages = refusal("SELECT COUNT(*) FROM census WHERE region = -1")
    assert messages["type_mismatch"] == (
        "census.region is VARCHAR: compare it with a quoted value such as 'X', not -1"
    )


def test_a_number_column_without_known_values_needs_only_its_type():
    """A data file without schools gives census.urn an empty list: a threshold can then be
    checked against the type alone (and the refusal of `=` names no nearest values)."""
    from safesetting.engine.parse import Catalogue

    empty = Catalogue(ref_domains={"schools.urn": ()})
    assert isinstance(parse_query("SELECT COUNT(*) FROM census WHERE urn > 5", empty), QueryPlan)
    refused = parse_query("SELECT COUNT(*) FROM census WHERE urn = 5", empty)
    assert refused.reasons[0].message == (
        "census.urn has no value 5; the nearest of its public values: "
    )


def test_text_against_a_number_column_says_a_whole_number():
    assert refusal("SELECT COUNT(*) FROM census WHERE nc_year = '6'")["type_mismatch"] == (
        "census.nc_year is SMALLINT: compare it with a whole number, not '6'"
    )


@pytest.mark.parametrize(
    ("where", "shown"),
    [
        ("sen_provision = TRUE", "not TRUE"),
        ("sen_provision = FALSE", "not FALSE"),
        ("nc_year = 'it''s'", "not 'it''s'"),
        ("nc_year = '" + "x" * 45 + "'", "not '" + "x" * 40 + "…'"),
        ("nc_year = '" + "y" * 40 + "'", "not '" + "y" * 40 + "'"),
        ("nc_year = 'A123456789012'", "not (a value shaped like an identifier)"),
    ],
)
def test_a_refused_value_is_shown_as_written_but_never_an_identifier(where, shown):
    message = refusal(f"SELECT COUNT(*) FROM census WHERE {where}")["type_mismatch"]
    assert message.endswith(shown)


def test_whole_numbers_must_fit_their_column_type_exactly():
    from safesetting.engine.parse import Catalogue

    empty = Catalogue(ref_domains={"schools.urn": ()})  # no known values: the type alone
    for ok in ("urn >= -2147483648", "urn <= 2147483647"):
        assert isinstance(parse_query(f"SELECT COUNT(*) FROM census WHERE {ok}", empty), QueryPlan)
    for bad in ("urn >= -2147483649", "urn <= 2147483648"):
        refused = parse_query(f"SELECT COUNT(*) FROM census WHERE {bad}", empty)
        assert [r.code for r in refused.reasons] == ["type_mismatch"]


def test_real_thresholds_up_to_ten_to_the_fifteenth_are_numbers():
    assert set(refusal("SELECT COUNT(*) FROM ks4 WHERE attainment8 > 1e15")) == {
        "value_not_in_domain"
    }
    assert set(refusal("SELECT COUNT(*) FROM ks4 WHERE attainment8 > 1.000001e15")) == {
        "type_mismatch"
    }


def test_a_literal_error_reads_as_its_message():
    from safesetting.engine.types import LiteralError

    error = LiteralError("no_public_domain.compared", column="x.y")
    assert str(error) == "x.y has no public list of values, so it cannot be compared with a value"
    assert (error.code, error.message) == (error.reason.code, error.reason.message)
    assert error.code == "no_public_domain"


@pytest.mark.parametrize(
    ("where", "code", "message"),
    [
        ("region = -'London'", "type_mismatch", "text cannot be negated"),
        ("nc_year = 1e999", "type_mismatch", "numbers must lie within ±10^18"),
        ("nc_year = 1e99999999", "type_mismatch", "numbers must lie within ±10^18"),
        ("nc_year > -1e99999999", "type_mismatch", "numbers must lie within ±10^18"),
        ("nc_year > 1e-99999999", "type_mismatch", "at most 18 decimal places"),
        ("nc_year IN (2, 1e99999999)", "type_mismatch", "numbers must lie within ±10^18"),
        ("nc_year BETWEEN 1 AND 1e99999999", "type_mismatch", "numbers must lie within"),
        ("fsm_eligible = -TRUE", "type_mismatch", "expected a plain value"),
    ],
)
def test_literals_that_are_not_plain_values_are_refused_with_their_reason(where, code, message):
    refused = parse_query(f"SELECT COUNT(*) FROM census WHERE {where}")
    assert isinstance(refused, Refusal)
    assert [(r.code, message in r.message) for r in refused.reasons] == [(code, True)]


def test_a_real_threshold_is_checked_as_written_not_truncated():
    """120.5 against a real column whose range ends at 90 is refused naming 90.5 as written;
    truncated to a whole number first it would slip inside the range."""
    refused = parse_query("SELECT COUNT(*) FROM ks4 WHERE attainment8 > 90.5")
    assert isinstance(refused, Refusal)
    assert [(r.code, r.message) for r in refused.reasons] == [
        ("value_not_in_domain", "ks4.attainment8 takes values from 0 to 90, not 90.5")
    ]
    assert isinstance(parse_query("SELECT COUNT(*) FROM ks4 WHERE attainment8 > 89.5"), QueryPlan)
