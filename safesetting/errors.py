"""One error hierarchy, one mapping to exit codes and HTTP statuses (CLI and server share it).

A policy denial is a value (``policies.Decision``), not an exception: these errors mean
"cannot proceed". Messages must never carry a row-level value, a true aggregate or an
identifier from the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# One Reason type: the policy's decisions and the errors share it (re-exported here).
from policies.reasons import Reason as Reason


class SafeSettingError(Exception):
    """Base class: anything that stops a request. Maps to exit 1 / HTTP 500 unless refined."""

    exit_code = 1
    http_status = 500
    kind = "internal"

    def __init__(self, message: str, reasons: list[Reason] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reasons: list[Reason] = list(reasons or [])


class UsageError(SafeSettingError):
    """Unusable input: bad SQL, bad arguments, a malformed policy file."""

    exit_code = 2
    http_status = 422
    kind = "bad_input"


class AuthenticationError(SafeSettingError):
    """No token, an unknown token, a revoked or expired one."""

    exit_code = 3
    http_status = 401
    kind = "unauthenticated"


class PermissionDeniedError(SafeSettingError):
    """The caller's role does not allow this."""

    exit_code = 3
    http_status = 403
    kind = "forbidden"


class PolicyDeniedError(SafeSettingError):
    """The policy refused the request; ``reasons`` says why."""

    exit_code = 3
    http_status = 403
    kind = "denied"


class BudgetExhaustedError(PolicyDeniedError):
    """The project or dataset-wide privacy budget cannot pay for this request."""

    http_status = 409
    kind = "budget_exhausted"


class NotFoundError(UsageError):
    """A named thing (project, researcher, query, entry) does not exist."""

    http_status = 404
    kind = "not_found"


class StateError(SafeSettingError):
    """The home is missing something it needs (no data generated yet, say)."""

    exit_code = 2
    http_status = 409
    kind = "state"


class UnavailableError(StateError):
    """The service has stopped answering fresh queries until its operator acts (the data
    could not be read after a query was paid for): HTTP 503, exit 2."""

    http_status = 503
    kind = "unavailable"


class RateLimitedError(SafeSettingError):
    """Too many requests from one client or token, or too many queries running at once:
    HTTP 429 with ``Retry-After``; exit 3 (refused)."""

    exit_code = 3
    http_status = 429
    kind = "rate_limited"

    def __init__(
        self, message: str, reasons: list[Reason] | None = None, *, retry_after: int = 1
    ) -> None:
        super().__init__(message, reasons)
        self.retry_after = max(int(retry_after), 1)


class IntegrityError(SafeSettingError):
    """Stored state failed verification (a tampered audit log, say)."""

    exit_code = 3
    http_status = 500
    kind = "integrity"


class IncidentError(SafeSettingError):
    """Something failed after a query was charged: the same fixed answer whatever the data.

    The cause (message and traceback) goes to the operator's ``incidents.log`` only; the
    caller sees the incident id and nothing that could depend on a pupil's record.
    """

    def __init__(self, incident: str) -> None:
        super().__init__(
            f"internal error (incident {incident}): the query could not be answered; "
            "the epsilon it was charged stays spent"
        )
        self.incident = incident


@dataclass
class ErrorEnvelope:
    """The single JSON shape for every error, on the CLI's --json and over HTTP."""

    kind: str
    message: str
    reasons: list[Reason] = field(default_factory=list)
    incident: str | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "error": {"kind": self.kind, "message": self.message},
            "reasons": [r.to_json() for r in self.reasons],
        }
        if self.incident:
            body["incident"] = self.incident
        return body


def envelope_for(exc: BaseException, incident: str | None = None) -> tuple[ErrorEnvelope, int, int]:
    """Return (envelope, exit code, HTTP status) for any exception.

    Unknown exceptions become a generic internal error whose message names only the incident:
    their text could hold anything, so it stays in the server log.

    >>> env, code, status = envelope_for(UsageError("bad flag"))
    >>> (env.kind, code, status)
    ('bad_input', 2, 422)
    """
    if isinstance(exc, SafeSettingError):
        found = getattr(exc, "incident", None) or incident
        envelope = ErrorEnvelope(exc.kind, exc.message, exc.reasons, found)
        return envelope, exc.exit_code, exc.http_status
    message = "internal error" + (f" (incident {incident})" if incident else "")
    return ErrorEnvelope("internal", message, [], incident), 1, 500
