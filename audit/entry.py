"""Audit entries: what may be recorded, and its canonical form.

An entry records *that* an access happened and what it cost, never what it saw: no row, no
true aggregate, no direct identifier. ``build_entry`` enforces that before anything is
hashed, so a careless caller gets an exception rather than a permanent record of a pupil.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audit.canonical import canonical_json
from audit.merkle import leaf_hash

ENTRY_FORMAT = 1

#: Keys a request may carry: what was asked and under which authority, never an answer.
ALLOWED_REQUEST_KEYS = frozenset(
    {
        # queries
        "sql", "epsilon", "epsilon_micro", "plan_digest", "query_id", "cache_key", "columns",
        "tables", "group_by", "aggregates", "dry_run", "normalised_sql", "sql_sha256",
        "plan_sha256", "normalised", "cached_query_id", "incident", "project",
        # failed logins, counted per client and window
        "attempts", "window_start", "window_seconds",
        # registry and admin changes
        "researcher", "role", "organisation", "org_type", "purpose", "title", "accredited_until",
        "expires", "budget_epsilon_micro", "members", "special", "token_id", "token_digest",
        "count", "reason", "policy_path",
        # data generation
        "pupils", "seed", "years",
        # transport
        "method", "path", "client",
        # signing-key rotations (verifier keys: public)
        "public_key", "previous_public_key",
    }
)  # fmt: skip

#: Request keys that hold a verifier key (``name+id+base64``) and nothing else. The key
#: itself is public and random, so only its name is held to the identifier check (random
#: base64 now and then spells something shaped like a postcode).
VERIFIER_KEY_FIELDS = frozenset({"public_key", "previous_public_key"})
_VERIFIER_KEY = re.compile(r"^([^\s+]{1,200})\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$")

#: Keys refused anywhere in an entry, at any depth: rows, true values, direct identifiers.
FORBIDDEN_KEYS = frozenset(
    {
        "row", "rows", "values", "records", "data", "result", "results", "true_value",
        "true_values", "true_aggregate", "upn", "pupil_id", "forename", "surname", "name",
        "postcode", "date_of_birth", "dob", "token", "password",
    }
)  # fmt: skip

# A UPN is a letter, eleven digits and a check character; postcodes as in the NPD. Upper
# case only, with word boundaries, so SQL keywords and column names do not match.
_UPN = re.compile(r"\b[A-Z]\d{11}[0-9A-Z]\b")
_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b")
_ACTION = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")
_REASON = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_TEXT = 20_000


def looks_like_identifier(text: str) -> bool:
    """Whether ``text`` holds something shaped like a UPN or a postcode (what the log refuses).

    >>> looks_like_identifier("A123456789012"), looks_like_identifier("SW1A 1AA")
    (True, True)
    >>> looks_like_identifier("census.region")
    False
    """
    return bool(_UPN.search(text) or _POSTCODE.search(text))


class EntryError(ValueError):
    """An entry is malformed (bad action name, negative ε, not canonicalisable …)."""


class ForbiddenContentError(EntryError):
    """An entry would carry a row, a true aggregate or a direct identifier."""


@dataclass(frozen=True)
class AuditEntry:
    """One log entry as stored: its fields, canonical bytes and RFC 9162 leaf hash."""

    seq: int
    time: str
    actor: str
    action: str
    project: str | None
    request: Mapping[str, Any] | None
    decision: str | None
    reasons: tuple[str, ...]
    epsilon_micro: int
    result_digest: str | None
    data_version: str | None
    policy_digest: str | None
    canonical: bytes = field(repr=False)
    leaf_hash: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The entry's fields plus its leaf hash (hex), for printing."""
        body: dict[str, Any] = json.loads(self.canonical)
        body["leaf_hash"] = self.leaf_hash.hex()
        return body


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ForbiddenContentError(f"{where} is longer than {MAX_TEXT} characters")
        if looks_like_identifier(value):
            raise ForbiddenContentError(f"{where} contains what looks like a UPN or postcode")
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise EntryError(f"{where} has a non-string key")
            if key.lower() in FORBIDDEN_KEYS:
                raise ForbiddenContentError(f"{where}.{key} may not be recorded")
            _check_value(inner, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            if isinstance(inner, Mapping | list | tuple):
                raise ForbiddenContentError(f"{where}[{i}] is a row-like value")
            _check_value(inner, f"{where}[{i}]")
    elif value is not None and not isinstance(value, bool | int | float):
        raise EntryError(f"{where} has unsupported type {type(value).__name__}")


def check_request(request: Mapping[str, Any] | None) -> None:
    """Refuse a request payload outside the allow-list or carrying forbidden content."""
    if request is None:
        return
    if not isinstance(request, Mapping):
        raise EntryError("request must be a mapping")
    unknown = sorted(k for k in request if k not in ALLOWED_REQUEST_KEYS)
    if unknown:
        raise ForbiddenContentError(f"request keys not on the allow-list: {', '.join(unknown)}")
    for key in VERIFIER_KEY_FIELDS.intersection(request):
        value = request[key]
        match = _VERIFIER_KEY.match(value) if isinstance(value, str) else None
        if match is None:
            raise ForbiddenContentError(f"request.{key} may only hold a verifier key")
        _check_value(match.group(1), f"request.{key}")
    _check_value({k: v for k, v in request.items() if k not in VERIFIER_KEY_FIELDS}, "request")


def check_entry(
    *,
    actor: str,
    action: str,
    project: str | None = None,
    request: Mapping[str, Any] | None = None,
    decision: str | None = None,
    reasons: Sequence[str] = (),
    epsilon_micro: int = 0,
    result_digest: str | None = None,
    data_version: str | None = None,
    policy_digest: str | None = None,
) -> dict[str, Any]:
    """Validate an entry's fields (refusing forbidden content); returns the body to seal."""
    if not isinstance(actor, str) or not actor:
        raise EntryError("actor must be a non-empty string")
    if not isinstance(action, str) or not _ACTION.match(action):
        raise EntryError(f"action must be dotted lower case (query.released), got {action!r}")
    if isinstance(reasons, str) or not all(
        isinstance(r, str) and _REASON.match(r) for r in reasons
    ):
        raise EntryError("reasons must be snake_case reason codes")
    if isinstance(epsilon_micro, bool) or not isinstance(epsilon_micro, int) or epsilon_micro < 0:
        raise EntryError("epsilon_micro must be a non-negative integer (micro-ε)")
    check_request(request)
    scalars = {
        "actor": actor,
        "project": project,
        "decision": decision,
        "result_digest": result_digest,
        "data_version": data_version,
        "policy_digest": policy_digest,
    }
    for name, value in scalars.items():
        if value is not None and not isinstance(value, str):
            raise EntryError(f"{name} must be a string")
        _check_value(value, name)
    return {
        "v": ENTRY_FORMAT,
        "action": action,
        "request": dict(request) if request is not None else None,
        "reasons": list(reasons),
        "epsilon_micro": epsilon_micro,
        **scalars,
    }


def seal_entry(body: Mapping[str, Any], seq: int, time: str) -> AuditEntry:
    """Give a checked body its seq and time, canonicalise and hash it."""
    full = {**body, "seq": seq, "time": time}
    try:
        canonical = canonical_json(full)
    except ValueError as exc:
        raise EntryError(str(exc)) from exc
    return _entry(full, canonical, leaf_hash(canonical))


def build_entry(*, seq: int, time: str, **fields: Any) -> AuditEntry:
    """``check_entry`` then ``seal_entry``: a validated, canonical, hashed entry."""
    return seal_entry(check_entry(**fields), seq, time)


def _entry(body: Mapping[str, Any], canonical: bytes, leaf: bytes) -> AuditEntry:
    return AuditEntry(
        seq=body["seq"],
        time=body["time"],
        actor=body["actor"],
        action=body["action"],
        project=body["project"],
        request=body["request"],
        decision=body["decision"],
        reasons=tuple(body["reasons"]),
        epsilon_micro=body["epsilon_micro"],
        result_digest=body["result_digest"],
        data_version=body["data_version"],
        policy_digest=body["policy_digest"],
        canonical=canonical,
        leaf_hash=leaf,
    )


def entry_from_canonical(canonical: bytes, stored_leaf_hash: bytes | None = None) -> AuditEntry:
    """Parse stored canonical bytes back into an entry (the leaf hash is recomputed unless
    ``stored_leaf_hash`` is given, which ``verify`` compares separately)."""
    leaf = stored_leaf_hash if stored_leaf_hash is not None else leaf_hash(canonical)
    return _entry(json.loads(canonical), canonical, leaf)
