"""The join rule: only joins that keep every joined row to one pupil are representable.

Each refusal names the rule that failed; each accepted shape becomes a join tree whose
conditions link the new node to nodes already joined.
"""

from __future__ import annotations

import pytest

from safesetting.engine.parse import parse_query
from safesetting.engine.plan import QueryPlan, Refusal

ACCEPTED = {
    "USING pupil_id": (
        "SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id)",
        [["ks2", ["census.pupil_id=ks2.pupil_id"]]],
    ),
    "USING pupil_id and academic_year": (
        "SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id, academic_year)",
        [["ks2", ["census.academic_year=ks2.academic_year", "census.pupil_id=ks2.pupil_id"]]],
    ),
    "ON, either side first": (
        "SELECT COUNT(*) FROM census c JOIN ks4 k ON k.pupil_id = c.pupil_id",
        [["ks4", ["census.pupil_id=ks4.pupil_id"]]],
    ),
    "a third table linked to the second": (
        "SELECT COUNT(*) FROM census c JOIN ks2 k ON k.pupil_id = c.pupil_id "
        "JOIN ks4 f ON f.pupil_id = k.pupil_id",
        [["ks2", ["census.pupil_id=ks2.pupil_id"]], ["ks4", ["ks2.pupil_id=ks4.pupil_id"]]],
    ),
    "year from another joined table": (
        "SELECT COUNT(*) FROM census c JOIN ks2 k USING (pupil_id) JOIN absence a "
        "ON a.pupil_id = c.pupil_id AND a.academic_year = k.academic_year",
        [["ks2", ["census.pupil_id=ks2.pupil_id"]],
         ["absence", ["census.pupil_id=absence.pupil_id",
                      "ks2.academic_year=absence.academic_year"]]],
    ),
    "a table joined to itself under a fresh alias": (
        "SELECT COUNT(*) FROM census a JOIN census b USING (pupil_id)",
        [["census", ["census.pupil_id=census_2.pupil_id"], "census_2"]],
    ),
    "public table on its key": (
        "SELECT COUNT(*) FROM census JOIN schools USING (urn)",
        [["schools", ["census.urn=schools.urn"]]],
    ),
    "public chain on keys": (
        "SELECT COUNT(*) FROM census c JOIN schools s ON c.urn = s.urn "
        "JOIN local_authorities l ON s.la_code = l.la_code",
        [["schools", ["census.urn=schools.urn"]],
         ["local_authorities", ["schools.la_code=local_authorities.la_code"]]],
    ),
    "home LA of the pupil": (
        "SELECT COUNT(*) FROM pupils JOIN local_authorities USING (la_code)",
        [["local_authorities", ["pupils.la_code=local_authorities.la_code"]]],
    ),
}  # fmt: skip


@pytest.mark.parametrize(("sql", "tree"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_join_shapes(sql, tree):
    import json

    plan = parse_query(sql)
    assert isinstance(plan, QueryPlan), getattr(plan, "reasons", None)
    nodes = json.loads(plan.normalised())["from"][1:]
    assert [[n["table"], n["on"], *([n["as"]] if "as" in n else [])] for n in nodes] == tree
    assert QueryPlan.from_doc(plan.to_doc()).normalised() == plan.normalised()


REFUSED = {
    "a column compared with itself": (
        "SELECT COUNT(*) FROM census JOIN ks4 ON ks4.pupil_id = ks4.pupil_id",
        "ks4.pupil_id is compared with itself: a join condition must link the table being "
        "joined (ks4) to one already joined"
    ),
    "a column compared with itself through an alias": (
        "SELECT COUNT(*) FROM census JOIN ks4 k ON k.pupil_id = k.pupil_id",
        "ks4.pupil_id is compared with itself: a join condition must link the table being "
        "joined (ks4) to one already joined"
    ),
    "the base compared with itself": (
        "SELECT COUNT(*) FROM census JOIN ks4 ON census.pupil_id = census.pupil_id",
        "census.pupil_id is compared with itself: a join condition must link the table being "
        "joined (ks4) to one already joined"
    ),
    "two columns of the new table": (
        "SELECT COUNT(*) FROM census JOIN ks2 ON ks2.pupil_id = ks2.academic_year",
        "ks2.pupil_id = ks2.academic_year compares two columns of one table: a join condition "
        "must link ks2 to a table already joined"
    ),
    "a condition between tables already joined": (
        "SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id) JOIN ks4 ON census.pupil_id = "
        "ks2.pupil_id",
        "census.pupil_id = ks2.pupil_id does not link ks4 to a table already joined: each "
        "condition of a join names the table being joined on one side"
    ),
    "academic_year alone": (
        "SELECT COUNT(*) FROM census JOIN ks2 ON census.academic_year = ks2.academic_year",
        "ks2 must join by pupil_id: a join on academic_year alone would pair different "
        "pupils' rows"
    ),
    "academic_year alone, by USING": (
        "SELECT COUNT(*) FROM census JOIN ks2 USING (academic_year)",
        "ks2 must join by pupil_id: a join on academic_year alone would pair different "
        "pupils' rows"
    ),
    "pupil_id to academic_year": (
        "SELECT COUNT(*) FROM census JOIN ks2 ON census.pupil_id = ks2.academic_year",
        "census.pupil_id = ks2.academic_year: pupil tables join only by pupil_id (optionally "
        "also academic_year) with the same column on both sides"
    ),
    "another column between pupil tables": (
        "SELECT COUNT(*) FROM census JOIN ks2 ON census.pupil_id = ks2.pupil_id AND "
        "census.nc_year = ks2.read_score",
        "census.nc_year = ks2.read_score: pupil tables join only by pupil_id (optionally also "
        "academic_year) with the same column on both sides"
    ),
    "a pupil table through a public one": (
        "SELECT COUNT(*) FROM census JOIN local_authorities USING (la_code) JOIN pupils ON "
        "pupils.la_code = local_authorities.la_code",
        "pupil table pupils cannot join public table local_authorities: pupil tables join a "
        "pupil table by pupil_id"
    ),
    "a public table on a column that is not its key": (
        "SELECT COUNT(*) FROM census JOIN schools ON schools.la_code = census.la_code",
        "schools joins only many-to-one on its key urn, from a column that references it "
        "(census.urn), not census.la_code = schools.la_code"
    ),
    "a public table on its key from a column that does not reference it": (
        "SELECT COUNT(*) FROM census JOIN schools ON schools.urn = census.nc_year",
        "schools joins only many-to-one on its key urn, from a column that references it "
        "(census.urn), not census.nc_year = schools.urn"
    ),
    "a public table on two conditions": (
        "SELECT COUNT(*) FROM census JOIN schools ON schools.urn = census.urn AND "
        "schools.la_code = census.la_code",
        "schools joins on its key urn alone, from one column"
    ),
    "an alias that shadows a table name": (
        "SELECT COUNT(*) FROM census AS ks4 JOIN ks4 AS census ON ks4.pupil_id = "
        "census.pupil_id",
        "the alias ks4 shadows the table ks4: choose another alias"
    ),
    "a table twice without an alias": (
        "SELECT COUNT(*) FROM census JOIN census USING (pupil_id)",
        "census appears twice in FROM: give each copy of a table its own alias"
    ),
    "an alias used twice": (
        "SELECT COUNT(*) FROM census c JOIN ks2 c USING (pupil_id)",
        "c appears twice in FROM: give each copy of a table its own alias"
    ),
    "not an equality": (
        "SELECT COUNT(*) FROM census JOIN ks2 ON census.pupil_id < ks2.pupil_id",
        "join conditions must be column = column"
    ),
    "OR in a join": (
        "SELECT COUNT(*) FROM census JOIN ks2 ON census.pupil_id = ks2.pupil_id OR TRUE",
        "join conditions must be column = column"
    ),
    "a left join": (
        "SELECT COUNT(*) FROM census LEFT JOIN ks2 USING (pupil_id)",
        "only inner joins are supported, not LEFT JOIN"
    ),
    "the same key twice": (
        "SELECT COUNT(*) FROM census c JOIN ks2 k ON c.pupil_id = k.pupil_id AND k.pupil_id = "
        "c.pupil_id",
        "ks2 joins on the same column twice: give each key once"
    ),
}  # fmt: skip


@pytest.mark.parametrize(("sql", "why"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_join_shapes_name_the_rule(sql, why):
    result = parse_query(sql)
    assert isinstance(result, Refusal), sql
    joins = [r for r in result.reasons if r.code == "unsupported_join"]
    assert joins, result.reasons
    assert joins[0].message == why


def test_a_join_error_carries_its_message():
    from safesetting.engine.joins import JoinError, attach
    from safesetting.engine.plan import ColumnRef, TableRef

    same = ColumnRef("ks4", "pupil_id")
    with pytest.raises(JoinError, match="compared with itself"):
        attach(TableRef("ks4", "ks4"), [(same, same)], {"census"})
    with pytest.raises(JoinError, match="needs USING"):
        attach(TableRef("ks4", "ks4"), [], {"census"})


def test_an_ambiguous_using_column_is_refused_as_duckdb_does():
    result = parse_query(
        "SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id) JOIN absence "
        "USING (pupil_id, academic_year)"
    )
    assert isinstance(result, Refusal)
    assert [r.code for r in result.reasons] == ["ambiguous_column"]


def test_a_table_named_instead_of_its_alias_is_unknown_with_a_hint():
    result = parse_query("SELECT COUNT(*) FROM census c WHERE census.nc_year = 1")
    assert isinstance(result, Refusal)
    assert "it is called c here" in result.reasons[0].message


def test_two_spellings_of_a_self_join_share_one_plan():
    a = parse_query(
        "SELECT x.fsm_eligible, COUNT(*) FROM census x JOIN census y USING (pupil_id)"
        " WHERE y.academic_year = 2023 GROUP BY x.fsm_eligible"
    )
    b = parse_query(
        "select p.FSM_ELIGIBLE, count(*) from CENSUS p join census q on q.pupil_id = p.pupil_id"
        " where 2023 = q.academic_year group by 1"
    )
    assert a.normalised() == b.normalised()
    assert a.pinned_years == frozenset({"census_2"})


def test_a_refused_public_join_names_the_columns_that_may_be_used():
    result = parse_query(
        "SELECT COUNT(*) FROM census JOIN local_authorities l ON l.region = census.region"
    )
    assert result.reasons[0].message == (
        "local_authorities joins only many-to-one on its key la_code, from a column that "
        "references it (census.la_code, pupils.la_code, schools.la_code), not "
        "census.region = local_authorities.region"
    )
