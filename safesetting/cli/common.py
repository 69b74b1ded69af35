"""Shared CLI plumbing: the context object, JSON output and the single error mapping."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from safesetting.backend import Backend, backend_for
from safesetting.errors import SafeSettingError, envelope_for
from safesetting.home import Home

if TYPE_CHECKING:
    from rich.console import Console

    console: Console  # made when imported, by __getattr__ below
    err_console: Console

F = TypeVar("F", bound=Callable[..., Any])


def __getattr__(name: str) -> Any:
    """``console`` and ``err_console``: rich consoles on stdout and stderr, made when a
    command imports them, so that one which prints no table (or only fails) never imports
    rich. Not cached: each reads the environment (``COLUMNS``, ``NO_COLOR``) of its command."""
    if name in ("console", "err_console"):
        from rich.console import Console

        return Console(stderr=name == "err_console")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Context:
    """What every command receives: the resolved home."""

    home: Home

    @classmethod
    def for_home(cls, home: str | None) -> Context:
        return cls(Home.resolve(home))

    def backend(self, token: str | None) -> Backend:
        """The home in this process, or the server at SAFESETTING_URL."""
        return backend_for(self.home, token)


pass_context = click.make_pass_decorator(Context)


def print_json(obj: Any) -> None:
    """One JSON object on stdout, nothing else."""
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(f)


def handle_errors(f: F) -> F:
    """Turn ``SafeSettingError`` (and anything unexpected) into ``Error: …`` and an exit code.

    With ``--json`` the same envelope the server returns goes to stdout as well. Never a
    traceback: unexpected errors print an incident id only.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader went away (`… | head`): not an internal error. Silence the final
            # flush and exit as a process killed by SIGPIPE would.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
            incident = None
            if not isinstance(exc, SafeSettingError):
                incident = uuid.uuid4().hex[:12]
                _record(incident, exc)
            envelope, code, _status = envelope_for(exc, incident)
            if kwargs.get("as_json") or kwargs.get("fmt") == "json":
                print_json(envelope.to_json())
            click.echo(f"Error: {envelope.message}", err=True)
            for reason in envelope.reasons:
                click.echo(f"  - {reason.code}: {reason.message}", err=True)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def incident_folder() -> Path:
    """Where this command's incidents go: its home when it has one, else the temp folder."""
    click_ctx = click.get_current_context(silent=True)
    context = click_ctx.find_object(Context) if click_ctx else None
    if context is not None and context.home.root.is_dir():
        return context.home.root
    return Path(tempfile.gettempdir())


def _record(incident: str, exc: BaseException) -> None:
    """The traceback behind an incident id, in the incident log (never on the screen)."""
    from safesetting.incidents import record_incident

    click_ctx = click.get_current_context(silent=True)
    command = click_ctx.command_path if click_ctx else "safesetting"
    with contextlib.suppress(OSError):
        record_incident(incident_folder(), incident, command, exc)


def token_option(f: F) -> F:
    return click.option(
        "--token",
        envvar="SAFESETTING_TOKEN",
        default=None,
        help="Your access token (env SAFESETTING_TOKEN). Shown once when you were registered.",
    )(f)
