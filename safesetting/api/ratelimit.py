"""Rate limits and failed-login counting: what one client or token may ask of a worker.

* :class:`RateLimitMiddleware` keeps a token bucket per client address and one per bearer
  token (keyed by a digest of it, never the token) and answers 429 with ``Retry-After`` and
  the usual envelope before anything else runs — no parsing, no database, no audit entry.
* :class:`FailedLogins` turns a flood of failed logins (bad tokens, an expired
  accreditation, a wrong role) into at most two ``auth.failed`` entries per client and
  caller per window: the first attempt is written at once (so one failed login is on
  the record as it happens), and the rest of the window's attempts are written as one entry
  carrying their number when the window closes.

Both are per worker process: with N workers a client may get up to N times the rate, and
each worker writes its own window entries. The limits come from ``policy.toml [limits]``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from policies.model import Limits
from safesetting.api.errors import error_response
from safesetting.errors import RateLimitedError

MAX_KEYS = 100_000  # buckets or windows kept per worker; the least recently used go first


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (level, t)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token for ``key``: 0 if it was there, else the seconds until it will be."""
        now = self.clock()
        with self._lock:
            level, then = self._buckets.pop(key, (float(self.burst), now))
            level = min(float(self.burst), level + (now - then) * self.rate)
            wait = 0.0
            if level >= 1.0:
                level -= 1.0
            else:
                wait = (1.0 - level) / self.rate
            self._buckets[key] = (level, now)
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
            return wait


def client_of(scope: Scope) -> str:
    """The peer address (no proxy header is trusted: put the limit in the proxy then)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _bearer_key(scope: Scope) -> str | None:
    """A digest of the bearer token as the app will read it (scheme in any case, spaces
    around it ignored), so ``Bearer  TOKEN`` is the same bucket as ``Bearer TOKEN``."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, rest = value.strip().partition(b" ")
            token = rest.strip() if scheme.lower() == b"bearer" else value
            return hashlib.sha256(token).hexdigest()[:32]
    return None


class RateLimitMiddleware:
    """429 (``Retry-After``, the usual envelope) for a client or token over its rate."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.clients = TokenBuckets(limits.requests_per_second_per_client, limits.burst_per_client)
        self.tokens = TokenBuckets(limits.requests_per_second_per_token, limits.burst_per_token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wait = self.clients.take(client_of(scope))
        what = "this client"
        token = _bearer_key(scope)
        if not wait and token is not None:
            wait, what = self.tokens.take(token), "this token"
        if wait:
            seconds = max(math.ceil(wait), 1)
            limited = RateLimitedError(
                f"too many requests from {what}: retry in {seconds} s", retry_after=seconds
            )
            await error_response(limited)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@dataclass
class _Window:
    start: float  # wall-clock seconds
    later: int = 0  # attempts after the first, not yet written
    reasons: set[str] = field(default_factory=set)
    path: str = "?"


@dataclass(frozen=True)
class Summary:
    """One client's attempts after the first in a closed window: one audit entry."""

    client: str
    actor: str
    attempts: int
    window_start: float
    reasons: tuple[str, ...]
    path: str


class FailedLogins:
    """Failed logins per client per window (see the module docstring)."""

    def __init__(self, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.window = float(window_seconds)
        self.clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._lock = threading.Lock()

    def note(
        self, client: str, reasons: list[str], path: str, actor: str = "anonymous"
    ) -> tuple[bool, list[Summary]]:
        """Count one failure by ``actor`` from ``client``. Returns (write an entry for this
        attempt now?, the summaries of windows that have closed and must be written)."""
        now = self.clock()
        closed: list[Summary] = []
        client = f"{client}\x1f{actor}"
        with self._lock:
            current = self._windows.get(client)
            if current is not None and now < current.start + self.window:
                current.later += 1
                current.reasons.update(reasons)
                current.path = path
                self._windows.move_to_end(client)
                return False, closed
            if current is not None:
                closed.extend(self._summary(client, current))
            self._windows[client] = _Window(start=now)
            self._windows.move_to_end(client)
            while len(self._windows) > MAX_KEYS:  # the oldest window is written early
                old_client, old = self._windows.popitem(last=False)
                closed.extend(self._summary(old_client, old))
            return True, closed

    def due(self, *, everything: bool = False) -> list[Summary]:
        """Summaries of every window that has closed (all of them with ``everything``, at
        shutdown); their clients start afresh."""
        now = self.clock()
        closed: list[Summary] = []
        with self._lock:
            for client in list(self._windows):
                window = self._windows[client]
                if everything or now >= window.start + self.window:
                    del self._windows[client]
                    closed.extend(self._summary(client, window))
        return closed

    def _summary(self, key: str, window: _Window) -> list[Summary]:
        if not window.later:
            return []
        client, _, actor = key.partition("\x1f")
        reasons = tuple(sorted(window.reasons))
        return [Summary(client, actor, window.later, window.start, reasons, window.path)]
