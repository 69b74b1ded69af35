"""A worker's lifeline to its supervisor: when ``safesetting serve``'s supervisor dies, its
workers stop too.

uvicorn's ``Multiprocess`` supervisor keeps its workers alive but nothing makes them follow
it: after a ``kill -9`` of the supervisor they serve on, unsupervised, holding the port, so
the next ``safesetting serve`` fails with EADDRINUSE. ``serve`` names its own pid in
``SAFESETTING_SUPERVISOR_PID``; each worker calls :func:`follow_supervisor` as it starts.

* On Linux the kernel sends the worker SIGTERM when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``). The parent may already have died before that call, so the
  worker then checks its parent is still the supervisor, and exits at once if not.
* Everywhere (and as a second line on Linux), a daemon thread compares ``os.getppid()`` with
  the supervisor's pid every second.

SIGTERM is uvicorn's graceful shutdown: the worker stops accepting, closes idle connections
and lets requests in flight finish (bounded by the header and body timeouts). If it has not
exited :data:`GRACE` seconds later, the thread ends the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

SUPERVISOR_ENV = "SAFESETTING_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL = 1.0  # seconds between two looks at the parent pid
GRACE = 15.0  # seconds an orphaned worker may take to shut down gracefully

log = logging.getLogger("safesetting.server")


def supervisor_pid() -> int | None:
    """The pid ``serve`` named as the workers' supervisor, if any."""
    value = os.environ.get(SUPERVISOR_ENV, "")
    return int(value) if value.isdigit() else None


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies. False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def follow_supervisor(expected: int | None = None) -> None:
    """Make this worker end when its supervisor ends (a no-op without a supervisor pid).

    Exits the process at once if the supervisor is already gone.
    """
    expected = expected if expected is not None else supervisor_pid()
    if expected is None:
        return
    set_parent_death_signal()
    # The race: the supervisor may have died before prctl, when the signal can no longer come.
    if os.getppid() != expected:
        log.warning("supervisor %d is gone before this worker started: exiting", expected)
        os._exit(1)
    threading.Thread(
        target=_watch, args=(expected,), name="safesetting-lifeline", daemon=True
    ).start()


def _watch(expected: int) -> None:
    while os.getppid() == expected:
        time.sleep(POLL)
    log.warning("supervisor %d is gone: worker %d shutting down", expected, os.getpid())
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown
    time.sleep(GRACE)
    os._exit(1)
