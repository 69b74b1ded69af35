"""The reason-code registry: every stable code a refusal can carry, with its plain-English text.

Codes are part of the interface (scripts and the audit log match on them); messages may be
reworded. Templates take only names and numbers from the policy and the request (a column
name, an ε, a date, a quoted part of the query), never a value from the data.

Every refusal is built here: ``reason("code", …)`` uses the code's own template, and
``reason("code.variant", …)`` one of the query engine's more specific wordings of the same
code (which rule of the join, which type a literal should have). A variant's code is the
part before the dot, so the set of codes cannot grow by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class Reason:
    """A stable reason code with a plain-English message.

    >>> reason("purpose_refused", purpose="policing").to_json()["code"]
    'purpose_refused'
    """

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


_TEMPLATES: Final[dict[str, str]] = {
    # Safe people
    "not_accredited": "researcher {researcher} is not accredited to query the data (role {role})",
    "accreditation_expired": "researcher {researcher}'s accreditation expired on {date}",
    "token_revoked": "the token presented for researcher {researcher} has been revoked",
    "no_token": "no token was presented",
    "unknown_token": "the token presented is not known",
    "token_expired": "the token presented has expired",
    "wrong_role": "the role {role} does not allow this",
    # Safe projects
    "not_a_member": "researcher {researcher} is not a member of project {project}",
    "project_expired": "project {project} expired on {date}",
    "project_closed": "project {project} is closed",
    "purpose_refused": "the purpose '{purpose}' is refused: pupil data may be used only for "
    "the educational purposes the policy allows",
    "org_type_limit": "organisation type '{org_type}' may not do this: {detail}",
    "table_not_approved": "table {table} is not approved for project {project}",
    "column_not_approved": "column {column} is {cls} and project {project} is not approved for it",
    "restricted_purpose": "column {column} is restricted and may be used only for an "
    "educational purpose, not '{purpose}'",
    "direct_identifier": "column {column} is a direct identifier and can never be queried "
    "(pupil_id only joins tables or is counted distinct)",
    "quasi_identifier": "column {column} is a quasi-identifier: it may only be grouped by or "
    "filtered on its declared coarse values",
    "unknown_column": "column {column} is not in the catalogue",
    "unknown_table": "table {table} is not in the catalogue",
    # Budget
    "epsilon_not_positive": "epsilon must be greater than 0 (asked for {epsilon})",
    "epsilon_too_large": "epsilon {epsilon} is more than the per-query maximum of {limit}",
    "budget_exhausted": "project {project} has {remaining} of its privacy budget left; "
    "this query needs {epsilon}",
    "dataset_cap_reached": "the dataset-wide privacy cap has {remaining} left; "
    "this query needs {epsilon}",
    "budget_too_large": "a project budget of {epsilon} is more than {limit} allowed for "
    "organisation type '{org_type}'",
    # Query shape (raised by the query engine's validator)
    "not_a_query": "only a SELECT query can be asked",
    "multiple_statements": "send exactly one SELECT statement",
    "select_star": "SELECT * is not allowed: name the aggregates you want",
    "bare_column": "column {column} appears outside an aggregate without being grouped by",
    "ambiguous_column": "column {column} could belong to more than one table: qualify it",
    "no_aggregate": "the query has no aggregate: ask for COUNT, SUM, AVG or a quantile",
    "no_public_domain": "column {column} has no public domain, so it cannot be grouped by",
    "table_function": "table functions and file access ({name}) are not allowed",
    "subquery": "subqueries, CTEs and set operations are not supported",
    "window_function": "window functions are not allowed",
    "distinct": "SELECT DISTINCT is not allowed: group by columns with public domains instead",
    "having": "HAVING is not allowed: it would choose groups by their true values",
    "order_by": "ORDER BY is not allowed: groups are released in their domain's order",
    "limit": "LIMIT and OFFSET are not allowed: every group of the domain is released",
    "unsupported_aggregate": "aggregate {name} is not supported",
    "unbounded_argument": "the argument of {name} has no clamping bounds in the catalogue",
    "unsupported_expression": "{name} is not supported in a query",
    "unsupported_join": "this join is not supported: join private tables on pupil_id (and "
    "academic_year), public tables on their key",
    "too_many_cells": "the query would release {cells} cells; the limit is {limit}",
    "join_too_wide": "the join could give one pupil more rows than the engine allows",
    # The service's limits (policy.toml [limits])
    "query_too_costly": "the query could cost {cost} (cells x aggregates x rows it may read); "
    "the limit is {limit}: ask for fewer groups or aggregates, or pin academic_year",
    "ledger_mismatch": "the budget ledger disagrees with the audit log; nothing can be charged "
    "until the operator has run `safesetting audit verify`",
    "too_many_queries": "researcher {researcher} already has {running} paid-for queries "
    "running; the limit is {limit}: retry when one has finished",
    "type_mismatch": "{column} is compared with a value of another type",
    "value_not_in_domain": "{column} has no such value among its public values",
    # Unusable input (audited as query.invalid, exit 2)
    "syntax_error": "the SQL could not be parsed",
    "epsilon_invalid": "epsilon must be a positive number with at most 6 decimals",
    "epsilon_too_small": "epsilon {epsilon} cannot give each of the query's measurements a share",
}

# The query engine's wordings, keyed "code.variant": each names the rule that refused, the
# column and the part of the query concerned. ``{sql}`` is a quoted part of the researcher's
# query (the engine cuts a message to 200 characters); a value is shown by the engine's own
# ``_show``, which never echoes text shaped like an identifier.
_VARIANTS: Final[dict[str, str]] = {
    # Statements and clauses
    "not_a_query.statement": "only SELECT is allowed, not {kind}",
    "subquery.set_operation": "UNION, INTERSECT and EXCEPT are not supported",
    "subquery.with": "WITH (common table expressions) is not supported",
    "subquery.nested": "subqueries are not supported",
    "window_function.qualify": "QUALIFY is not allowed",
    "select_star.rows": "SELECT * would release rows; ask for aggregates",
    "table_function.file": "{name}() reads files; it is not allowed",
    "table_function.from": "only named tables may appear in FROM",
    "distinct.values": "SELECT DISTINCT lists values; ask for aggregates",
    "having.true_values": "HAVING filters on true aggregates; filter the released table",
    "limit.rows": "LIMIT and OFFSET select rows; every group is released",
    "order_by.sort": "ORDER BY is not supported; sort the released table",
    "no_aggregate.none": "a query must ask for at least one aggregate",
    "too_many_cells.grouping": "the grouping has {cells} cells; at most {limit} are allowed",
    "unsupported_expression.function": "function {name}() is not allowed",
    "unsupported_expression.clause": "{clause} is not supported",
    "unsupported_expression.table_option": "{options} on a table is not supported",
    "unsupported_expression.group_by_all": "GROUP BY ALL is not supported: name the keys",
    "unsupported_expression.grouping_sets": "ROLLUP, CUBE and GROUPING SETS are not supported",
    "unsupported_expression.column_use": "{column} is used where the engine cannot tell how "
    "(only group keys, filters, join keys and aggregate arguments are)",
    # Tables and columns
    "unknown_table.qualified": "qualified table names are not allowed ({sql})",
    "unknown_table.named": "there is no table {name!r}; see `data catalogue`",
    "unknown_table.no_from": "a query must read FROM a table",
    "unknown_table.public_base": "query a pupil table (public tables only join to one)",
    "unknown_column.qualified": "{sql} is not a column of a table in FROM",
    "unknown_column.no_table": "{qualifier}.{column}: no table {qualifier} in FROM",
    "unknown_column.aliased": "{qualifier}.{column}: no table {qualifier} in FROM "
    "(it is called {alias} here)",
    "unknown_column.in_table": "table {table} has no column {column}",
    "unknown_column.anywhere": "no table in FROM has a column {column!r}",
    "unknown_column.using": "USING ({column}) needs the column on both sides",
    "unknown_column.position": "GROUP BY {position}: no such output column",
    "ambiguous_column.owners": "{column} is in {owners}: qualify it",
    "ambiguous_column.using": "USING ({column}) could mean {choices}: join with ON and name "
    "the columns",
    "direct_identifier.shaped_value": "a value shaped like a UPN or a postcode cannot be used "
    "in a query",
    # Joins (joins.py): each names the rule that failed
    "unsupported_join.kind": "only inner joins are supported, not {kind} JOIN",
    "unsupported_join.condition": "join conditions must be column = column",
    "unsupported_join.column_aliases": "column aliases on a table are not supported",
    "unsupported_join.shadow": "the alias {alias} shadows the table {alias}: choose another alias",
    "unsupported_join.twice": "{name} appears twice in FROM: give each copy of a table its own "
    "alias",
    "unsupported_join.no_condition": "joining {table} needs USING (...) or ON a = b",
    "unsupported_join.self": "{column} is compared with itself: a join condition must link the "
    "table being joined ({node}) to one already joined",
    "unsupported_join.same_table": "{left} = {right} compares two columns of one table: a join "
    "condition must link {node} to a table already joined",
    "unsupported_join.not_linked": "{left} = {right} does not link {node} to a table already "
    "joined: each condition of a join names the table being joined on one side",
    "unsupported_join.pupil_to_public": "pupil table {table} cannot join public table {public}: "
    "pupil tables join a pupil table by pupil_id",
    "unsupported_join.pupil_keys": "{left} = {right}: pupil tables join only by pupil_id "
    "(optionally also academic_year) with the same column on both sides",
    "unsupported_join.year_only": "{node} must join by pupil_id: a join on academic_year alone "
    "would pair different pupils' rows",
    "unsupported_join.same_key_twice": "{node} joins on the same column twice: give each key once",
    "unsupported_join.public_one_key": "{table} joins on its key {key} alone, from one column",
    "unsupported_join.public_key": "{table} joins only many-to-one on its key {key}, from a "
    "column that references it ({referencing}), not {left} = {right}",
    "join_too_wide.tables": "a query may join at most {limit} tables",
    "join_too_wide.rows": "this join could give one pupil up to {rows:,} rows (at most {limit} "
    "are allowed): join pupil tables on academic_year too, or fix their year with WHERE "
    "academic_year = …",
    # Filters
    "type_mismatch.not_boolean": "{column} is not a yes/no column",
    "unsupported_expression.comparison": "compare a column with a value: {sql}",
    "unsupported_expression.in_list": "IN needs a column and a list of values",
    "unsupported_expression.between": "BETWEEN needs a column",
    "unsupported_expression.symmetric": "BETWEEN SYMMETRIC is not supported: write BETWEEN "
    "low AND high",
    "unsupported_expression.is_null": "IS NULL needs a column",
    "unsupported_expression.in_filter": "{name} is not allowed in a filter",
    # Literals (types.py)
    "type_mismatch.negated_text": "text cannot be negated",
    "type_mismatch.number": "expected a number",
    "type_mismatch.finite": "numbers must be finite",
    "type_mismatch.digits": "numbers must lie within ±10^{digits} with at most {digits} "
    "decimal places",
    "type_mismatch.null": "compare with NULL using IS NULL or IS NOT NULL",
    "type_mismatch.plain": "expected a plain value (a number, 'text', TRUE or FALSE)",
    "type_mismatch.wanted": "{column} is {dtype}: compare it with {wanted}, not {value}",
    "type_mismatch.whole_number": "{column} is {dtype}: compare it with a whole number from "
    "{low} to {high}, not {value}",
    "no_public_domain.compared": "{column} has no public list of values, so it cannot be "
    "compared with a value",
    "value_not_in_domain.nearest": "{column} has no value {value}; the nearest of its public "
    "values: {nearest}",
    "value_not_in_domain.range": "{column} takes values from {low} to {high}, not {value}",
    # Grouping and the SELECT list
    "no_public_domain.expression": "group by plain columns only, not {sql}",
    "no_public_domain.group_key": "{column} has no public list of values, so it cannot be grouped",
    "bare_column.ungrouped": "{column} is neither aggregated nor in GROUP BY; rows never leave",
    "bare_column.not_aggregate": "{sql} is not an aggregate",
    # Aggregates and their arguments (expressions.py)
    "unsupported_aggregate.count_distinct": "COUNT(DISTINCT ...) works on pupil_id only",
    "unsupported_aggregate.count": "cannot count {sql}",
    "unsupported_aggregate.distinct": "DISTINCT inside an aggregate is not supported",
    "unsupported_aggregate.quantile": "a quantile must be between 0 and 1",
    "unsupported_aggregate.other": "{name} is not supported; use COUNT, SUM, AVG, MEDIAN or "
    "QUANTILE_CONT",
    "unsupported_expression.aggregate_arithmetic": "arithmetic on aggregates is not supported; "
    "compute it from the released table",
    "unsupported_expression.filter": "FILTER (WHERE ...) on an aggregate is not supported: count "
    "with SUM(CASE WHEN ... THEN 1 ELSE 0 END), or move the condition to WHERE",
    "unsupported_expression.number": "expected a number",
    "unsupported_expression.unbounded": "{sql} has no bounds the catalogue can vouch for",
    "unsupported_expression.cast": "cannot cast to {type}: cast to INTEGER (or another "
    "whole-number type) or DOUBLE",
    "unsupported_expression.simple_case": "use CASE WHEN condition THEN value END",
    "unsupported_expression.empty_case": "CASE needs a value in some branch",
    "unbounded_argument.units": "{sql} can range too widely for a useful answer",
    "unbounded_argument.number": "numbers beyond ±{limit:g} are not supported",
    "unbounded_argument.reach": "{sql} can reach {reach:g}; values beyond ±{limit:g} are not "
    "supported",
    "unbounded_argument.no_bounds": "{column} has no declared bounds",
    "unbounded_argument.flag": "{column} has no declared bounds (use CAST(col AS INTEGER))",
    "type_mismatch.cast": "{sql}: values up to {reach:g} do not fit {type}; cast to BIGINT",
}

REASON_CODES: Final[tuple[str, ...]] = tuple(_TEMPLATES)
TEMPLATES: Final = MappingProxyType(_TEMPLATES)
VARIANTS: Final = MappingProxyType(_VARIANTS)


def reason(key: str, /, **params: object) -> Reason:
    """Build the :class:`Reason` for ``key`` (a code, or ``code.variant``) with its message
    filled in.

    Unknown codes or variants and missing parameters are programming errors and raise
    ``KeyError``.

    >>> reason("project_closed", project="p1").message
    'project p1 is closed'
    >>> r = reason("unsupported_join.no_condition", table="ks2")
    >>> r.code, r.message
    ('unsupported_join', 'joining ks2 needs USING (...) or ON a = b')
    """
    code = key.partition(".")[0]
    template = _VARIANTS[key] if key != code else _TEMPLATES[code]
    return Reason(code, template.format(**params))


def describe(key: str) -> str:
    """The template of ``key`` (a code or ``code.variant``) with its placeholders shown, for
    documentation.

    >>> describe("project_closed")
    'project <project> is closed'
    >>> describe("unsupported_join.no_condition")
    'joining <table> needs USING (...) or ON a = b'
    """
    template = _VARIANTS[key] if "." in key else _TEMPLATES[key]
    return template.replace("{", "<").replace("}", ">")
