"""The demo's script is well formed: every step can be played and expects known outcomes."""

from __future__ import annotations

from policies.reasons import REASON_CODES
from safesetting.demo import story
from safesetting.demo.play import Player
from safesetting.engine.parse import parse_query
from safesetting.engine.plan import QueryPlan, Refusal
from tests.classify import codes


def test_every_step_has_a_player_method_and_text():
    keys = [s.key for s in story.STEPS]
    assert len(keys) == len(set(keys))
    for step in story.STEPS:
        assert hasattr(Player, f"_{step.action}"), step.action
        assert all((step.title, step.what, step.why)), step.key


def test_expected_codes_are_registered_reason_codes():
    for step in story.STEPS:
        assert set(step.codes) <= set(REASON_CODES), step.key


def test_query_steps_name_a_registered_person_and_project():
    people = {p.id for p in story.PEOPLE}
    projects = {a.id for a in story.APPLICATIONS}
    for step in story.STEPS:
        if step.action in ("query", "exhaust"):
            assert step.who in people
            assert step.project in projects


def test_queries_expected_to_be_released_are_valid_plans():
    for step in story.STEPS:
        if step.expect in (story.RELEASED, story.CACHED):
            assert isinstance(parse_query(step.sql), QueryPlan), step.key
        if step.action == "exhaust":
            assert all(isinstance(parse_query(sql), QueryPlan) for sql in step.sqls)


def test_identifier_steps_are_refused_for_their_shape_and_their_columns():
    """The identifier steps are refused by the parser for their shape, and the columns it
    reports are refused by the policy for their class (the service reports both)."""
    for key in ("refuse-extract", "refuse-upn", "refuse-name"):
        step = next(s for s in story.STEPS if s.key == key)
        parsed = parse_query(step.sql)
        assert isinstance(parsed, Refusal)
        assert set(step.codes) <= codes(step.sql)


def test_the_exhaust_step_asks_more_than_the_budget_allows():
    step = next(s for s in story.STEPS if s.key == "exhaust-budget")
    app = next(a for a in story.APPLICATIONS if a.id == step.project)
    first = next(s for s in story.STEPS if s.key == "release-gap")
    asked = float(first.epsilon) + float(step.epsilon) * len(step.sqls)
    assert asked > float(app.budget_epsilon)


def test_the_enforcement_application_is_for_a_refused_purpose():
    app = next(a for a in story.APPLICATIONS if a.id == "enforcement")
    assert app.purpose == "immigration_enforcement"
    assert "census.nationality" in app.special
