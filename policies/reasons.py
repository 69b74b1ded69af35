"""The reason-code registry: every stable code a refusal can carry, with its plain-English text.

Codes are part of the interface (scripts and the audit log match on them); messages may be
reworded. Templates take only names and numbers from the policy and the request (a column
name, an ε, a date), never a value from the data.
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
    "(pupil_id only as a join key or in COUNT(DISTINCT pupil_id))",
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

REASON_CODES: Final[tuple[str, ...]] = tuple(_TEMPLATES)
TEMPLATES: Final = MappingProxyType(_TEMPLATES)


def reason(code: str, **params: object) -> Reason:
    """Build the :class:`Reason` for ``code`` with its message filled in.

    Unknown codes and missing parameters are programming errors and raise ``KeyError``.

    >>> reason("project_closed", project="p1").message
    'project p1 is closed'
    """
    return Reason(code, _TEMPLATES[code].format(**params))


def describe(code: str) -> str:
    """The template of ``code`` with its placeholders shown, for documentation.

    >>> describe("project_closed")
    'project <project> is closed'
    """
    return _TEMPLATES[code].replace("{", "<").replace("}", ">")
