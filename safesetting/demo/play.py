"""Run the demo: set up a fresh home, play every step of the story against the real service,
and collect what the report needs.

Everything goes through the library functions an operator, a researcher and an auditor use
(``administration``, ``QueryService.submit``, ``subject_access``, ``audit_log.AuditLog``): real
OpenDP noise, the real ledger, the real audit log. Only :mod:`safesetting.demo.truth` goes
beyond what the product allows, to show the true values of synthetic data, and the tamper
scene edits a copy of the control database through :mod:`safesetting.insider`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from safesetting import administration as admin
from safesetting.audit_log import AuditLog
from safesetting.control import Control, close_connections, init_home, open_control
from safesetting.demo import story
from safesetting.demo.story import Step
from safesetting.demo.truth import Truth, mask_upn, pupil_with_exclusion, true_rows
from safesetting.errors import PolicyDeniedError, UsageError
from safesetting.home import Home
from safesetting.insider import tamper_copy
from safesetting.results import CACHED, DENIED, QueryResult
from safesetting.service import QueryService
from safesetting.subject_access import subject_access
from synthetic import GENERATOR_VERSION
from synthetic.load import generate_database, read_data_version

DEFAULT_PUPILS = 200_000
DEFAULT_SEED = 2026
MARKER = "SAFESETTING-DEMO"  # a demo home holds this file; nothing else is ever cleared
OPERATOR = "admin:demo-operator"
ALL_YEARS = "2012-2024"

Notify = Callable[[str, Any], None]


class DemoHome(Home):
    """The demo's home always keeps its own SQLite control database (the tamper scene
    copies the file), whatever ``SAFESETTING_DB_URL`` says."""

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.control_db}"


@dataclass
class Outcome:
    """What one step did, and whether that is what the story expects."""

    step: Step
    status: str
    ok: bool
    reasons: list[dict[str, str]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    truth: list[Truth] = field(default_factory=list)  # demo only: synthetic data
    detail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class DemoRun:
    """Everything the terminal summary and the HTML report show."""

    out: Path
    home: Path
    pupils: int
    seed: int
    data_version: str
    data_seconds: float
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    control: Control | None = None

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


def prepare_home(out: Path, pupils: int, seed: int, notify: Notify) -> tuple[DemoHome, float]:
    """A fresh demo home under ``out``: the data are kept when they match, the rest cleared.

    Refuses a ``home`` folder that is not a demo's (it could be someone's real safe setting).
    """
    root = out / "home"
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise UsageError(f"{root} exists and is not a demo home: choose another --out")
    home = DemoHome(root.resolve())
    home.ensure()
    (root / MARKER).write_text("Created by `safesetting demo`; cleared by the next run.\n")
    # This process may still hold pooled connections to the previous run's control database.
    close_connections(home)
    for name in ("control.db", "control.db-wal", "control.db-shm", "policy.toml", "checkpoint.key"):
        (root / name).unlink(missing_ok=True)
    started = time.perf_counter()
    reuse = False
    if home.database.exists():
        try:
            version = read_data_version(home.database)
            first, last = (int(y) for y in ALL_YEARS.split("-"))
            reuse = (version.pupils, version.seed, version.generator_version) == (
                pupils,
                seed,
                GENERATOR_VERSION,
            ) and (version.first_year, version.last_year) == (first, last)
        except Exception:  # noqa: BLE001 - an unreadable old file is regenerated
            reuse = False
    if reuse:
        notify("setup", f"Reusing the synthetic NPD of {pupils:,} pupils in {home.database}")
    else:
        notify("setup", f"Generating a synthetic NPD of {pupils:,} pupils (seed {seed}) …")
        generate_database(home.database, pupils, seed=seed, years=ALL_YEARS, force=True)
    return home, time.perf_counter() - started


class Player:
    """Plays the steps in order, keeping tokens and query ids between them."""

    def __init__(self, control: Control, run: DemoRun) -> None:
        self.control = control
        self.service = QueryService(control)
        self.log = AuditLog.of_control(control)
        self.run = run
        self.tokens: dict[str, str] = {}
        self.query_ids: dict[str, list[str]] = {}
        self.optout_upn: str | None = None
        self.published: str | None = None

    # -- setup -------------------------------------------------------------------------------
    def register(self, notify: Notify) -> None:
        until = (self.control.today() + timedelta(days=365)).isoformat()
        for person in story.PEOPLE:
            issued = admin.add_researcher(
                self.control,
                person.id,
                organisation=person.organisation,
                role=person.role,
                accredited_until=until,
            )
            self.tokens[person.id] = issued.token or ""
            notify(
                "setup",
                f"Registered {person.role} {person.id} ({person.organisation}): "
                f"{person.description}",
            )
        for app in story.APPLICATIONS:
            if any(s.application == app.id for s in story.STEPS):
                continue  # applied for on stage
            self.apply(app)
            notify(
                "setup",
                f"Approved project {app.id} ({app.org_type}, {app.purpose}, "
                f"budget ε = {app.budget_epsilon}): {app.title}",
            )
        self.published = self.log.latest_checkpoint()
        path = self.run.out / "published-checkpoint.txt"
        path.write_text(self.published or "")
        notify("setup", f"Published the signed checkpoint of the audit log to {path}")

    def apply(self, app: story.Application) -> None:
        admin.approve_project(
            self.control,
            app.id,
            title=app.title,
            org_type=app.org_type,
            purpose=app.purpose,
            tables=app.tables,
            special=app.special,
            budget_epsilon=app.budget_epsilon,
            expires=(self.control.today() + timedelta(days=730)).isoformat(),
            members=app.members,
        )

    # -- steps -------------------------------------------------------------------------------
    def play(self, step: Step) -> Outcome:
        started = time.perf_counter()
        outcome: Outcome = getattr(self, f"_{step.action}")(step)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _apply(self, step: Step) -> Outcome:
        app = next(a for a in story.APPLICATIONS if a.id == step.application)
        try:
            self.apply(app)
        except PolicyDeniedError as exc:
            reasons = [r.to_json() for r in exc.reasons]
            return self._judge(step, story.REFUSED, reasons, detail={"application": app})
        return self._judge(step, "approved", [], detail={"application": app})

    def _ask(self, step: Step, sql: str) -> QueryResult:
        assert step.who
        assert step.project
        caller = self.service.login(self.tokens[step.who], step.project)
        return self.service.submit(caller, sql, step.project, step.epsilon)

    def _query(self, step: Step) -> Outcome:
        assert step.sql
        result = self._ask(step, step.sql)
        self.query_ids.setdefault(step.key, []).append(result.query_id)
        truth = [true_rows(self.control, step.sql)] if step.show_truth and result.ok else []
        status = {DENIED: story.REFUSED, CACHED: story.CACHED}.get(result.status, result.status)
        reasons = [r.to_json() for r in result.reasons]
        return self._judge(step, status, reasons, [result.to_json()], truth)

    def _exhaust(self, step: Step) -> Outcome:
        results: list[QueryResult] = []
        for sql in step.sqls:
            results.append(self._ask(step, sql))
            if results[-1].status == DENIED:
                break
        last = results[-1]
        status = story.EXHAUSTED if last.status == DENIED else story.RELEASED
        early = all(r.status != DENIED for r in results[:-1])
        reasons = [r.to_json() for r in last.reasons]
        outcome = self._judge(step, status, reasons, [r.to_json() for r in results])
        outcome.ok = outcome.ok and early and len(results) == len(step.sqls)
        return outcome

    def _optout(self, step: Step) -> Outcome:
        self.optout_upn = pupil_with_exclusion(str(self.control.home.database), 2023)
        added = admin.add_optouts(self.control, [self.optout_upn])
        entry = self.log.latest_entry("optout.added")
        detail = {
            "upn_masked": mask_upn(self.optout_upn),
            "added": added.added,
            "audit_seq": entry["seq"] if entry else None,
            "audit_request": dict(entry.get("request") or {}) if entry else {},
        }
        status = story.RECORDED if added.added == 1 else "not recorded"
        return self._judge(step, status, [], detail=detail)

    def _subject_access(self, step: Step) -> Outcome:
        assert self.optout_upn
        answer = subject_access(self.control, self.optout_upn)
        by_id = {x.query_id: x.included for x in answer.queries}
        before = self.query_ids.get("release-exclusions", [])
        after = self.query_ids.get("release-after-optout", [])
        consistent = (
            answer.found
            and all(by_id.get(q) is True for q in before)
            and all(by_id.get(q) is False for q in after)
            and bool(before)
            and bool(after)
        )
        status = story.ANSWERED if answer.found else "not found"
        outcome = self._judge(step, status, [], detail={"answer": answer.to_json()})
        outcome.ok = outcome.ok and consistent
        return outcome

    def _verify(self, step: Step) -> Outcome:
        result = self.log.check(self.published)  # with the key in force
        status = story.VERIFIED if result.ok else "failed"
        return self._judge(step, status, [], detail={"verify": result.to_json()})

    def _tamper(self, step: Step) -> Outcome:
        copy = self.run.out / "tampered-control.db"
        seq, result = tamper_copy(self.control, copy, self.query_ids["release-gap"][0])
        caught = not result.ok and result.first_bad_seq == seq
        detail = {"copy": str(copy), "edited_seq": seq, "verify": result.to_json()}
        return self._judge(step, story.CAUGHT if caught else "missed", [], detail=detail)

    def _judge(
        self,
        step: Step,
        status: str,
        reasons: list[dict[str, str]],
        results: list[dict[str, Any]] | None = None,
        truth: list[Truth] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Outcome:
        codes = {r["code"] for r in reasons}
        ok = status == step.expect and set(step.codes) <= codes
        return Outcome(step, status, ok, reasons, results or [], list(truth or []), detail or {})


def run_demo(
    out: Path,
    pupils: int = DEFAULT_PUPILS,
    seed: int = DEFAULT_SEED,
    notify: Notify | None = None,
) -> DemoRun:
    """Set up, play every step of :data:`story.STEPS`, and return the record of it."""
    say: Notify = notify or (lambda _kind, _payload: None)
    started = time.perf_counter()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    home, data_seconds = prepare_home(out, pupils, seed, say)
    init_home(home, actor=OPERATOR)
    control = open_control(home, actor=OPERATOR)
    run = DemoRun(
        out=out,
        home=home.root,
        pupils=pupils,
        seed=seed,
        data_version=read_data_version(home.database).id,
        data_seconds=data_seconds,
    )
    player = Player(control, run)
    player.register(say)
    for step in story.STEPS:
        outcome = player.play(step)
        run.outcomes.append(outcome)
        say("step", outcome)
    run.control = control
    run.seconds = time.perf_counter() - started
    return run
