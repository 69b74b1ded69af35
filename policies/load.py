"""Reading ``policy.toml``: the only I/O in ``policies``.

``load_policy`` returns the validated :class:`~policies.model.Policy` together with the
SHA-256 of the file's bytes, which is recorded with every decision. Any problem raises
:class:`PolicyFileError` with one line naming the path inside the document
(``purposes.refused[2]: …``).
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from policies.model import Policy

MAX_POLICY_BYTES: Final = 1_000_000

DEFAULT_POLICY_TOML: Final = """\
# Safe Setting policy: the rules every query and every project approval is checked against.
# This file is versioned like code. Its SHA-256 is recorded with every audit entry, and a
# change is noticed and logged as `policy.changed` the next time the safe setting starts.
# Unknown keys are refused. ε values are exact decimals (at most 6 decimal places).

version = 1

# Noisy counts below this are released as "suppressed" (free post-processing).
min_cell_count = 10

# Records older than this many academic years are excluded from every query.
retention_years = 25

[epsilon]
default_per_query = 0.5   # used when a query does not name its ε
max_per_query = 1.0       # no single query may spend more
dataset_cap = 50          # total privacy loss any one pupil may suffer from all research

[purposes]
# Purposes a project may be approved for.
allowed = ["educational_research", "official_statistics", "education_policy_evaluation"]
# Allowed purposes that count as educational: only these may use restricted columns
# (nationality, country of birth).
educational = ["educational_research", "official_statistics", "education_policy_evaluation"]
# Refused outright. immigration_enforcement, policing and commercial_marketing cannot be
# removed from this list; any purpose not in `allowed` is refused too.
refused = ["immigration_enforcement", "policing", "commercial_marketing"]

[releases]
# A question asked again within a project is answered from its first release at no cost.
# Set true to let one project's release answer the same question from another project (the
# answer names no other project's query either way).
share_across_projects = false

[limits]
# The service's self-defence. Rates are per server worker (token buckets): a client (IP
# address) or a token over its rate gets HTTP 429 with Retry-After.
requests_per_second_per_client = 20.0
burst_per_client = 60
requests_per_second_per_token = 10.0
burst_per_token = 30
# Failed logins from one client are recorded as one `auth.failed` entry per window (with
# the number of attempts), not one entry per attempt.
failed_login_window_seconds = 60
# Fresh (paid-for) queries one researcher may have running at once.
concurrent_queries_per_researcher = 2
# cells x aggregates x rows (rows: declared pupils x rows per pupil), known before running.
max_query_cost = 1_000_000_000_000

# Limits by organisation type. Absent keys mean "the policy-wide limit applies".
[organisation_types.academic]
max_budget_epsilon = 10

[organisation_types.government]
max_budget_epsilon = 10

[organisation_types.charity]
max_budget_epsilon = 5

[organisation_types.commercial]
max_epsilon_per_query = 0.5
max_budget_epsilon = 2
special_category_allowed = false
restricted_allowed = false

[organisation_types.press]
max_epsilon_per_query = 0.5
max_budget_epsilon = 1
special_category_allowed = false
restricted_allowed = false

# Column classes default from the schema declaration (`safesetting data catalogue`):
# direct_identifier (never queryable), quasi_identifier (only grouped or filtered on its
# declared coarse values), special_category (only for projects approved for the column),
# restricted (only for approved projects with an educational purpose), general.
# Override a column's class here; a direct identifier cannot be relaxed. For example:
[columns]
# "census.language_group" = "special_category"
"""


class PolicyFileError(ValueError):
    """The policy file is missing, unreadable or invalid; the message is one line."""


def format_loc(loc: Sequence[int | str]) -> str:
    """Render a validation location as a document path.

    >>> format_loc(("purposes", "refused", 2))
    'purposes.refused[2]'
    >>> format_loc(("columns", "census.x"))
    'columns."census.x"'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if part.replace("_", "").isalnum() else f'"{part}"'
            out += f".{text}" if out else text
    return out or "(document)"


def parse_policy(text: str) -> Policy:
    """Validate policy TOML text into a :class:`Policy` (pure).

    >>> parse_policy(DEFAULT_POLICY_TOML).min_cell_count
    10
    """
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"not valid TOML: {exc}") from None
    except RecursionError:
        raise PolicyFileError("not valid TOML: nested too deeply") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise PolicyFileError(f"{format_loc(first['loc'])}: {message}{extra}") from None


def default_policy() -> Policy:
    """The policy written on first use."""
    return parse_policy(DEFAULT_POLICY_TOML)


def load_policy(path: str | os.PathLike[str]) -> tuple[Policy, str]:
    """Read and validate ``path``; return the policy and the SHA-256 hex digest of its bytes."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyFileError(f"cannot read policy file {file}: {exc.strerror}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyFileError(f"policy file {file} is larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyFileError(f"policy file {file} is not UTF-8 text") from None
    try:
        policy = parse_policy(text)
    except PolicyFileError as exc:
        raise PolicyFileError(f"{file.name}: {exc}") from None
    return policy, hashlib.sha256(raw).hexdigest()


def write_default_policy(path: str | os.PathLike[str]) -> bool:
    """Write the commented default policy to ``path`` unless a file is already there.

    Returns True if it wrote the file. An existing policy is never overwritten.
    """
    file = Path(path)
    try:
        with file.open("x", encoding="utf-8") as handle:
            handle.write(DEFAULT_POLICY_TOML)
    except FileExistsError:
        return False
    return True
