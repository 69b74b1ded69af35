"""The operator's incident log: where the cause of an internal error goes, and nowhere else.

An engine error can quote a value from the data (DuckDB's messages name the value that
failed), so its text and traceback never reach the researcher's screen, the HTTP response,
the audit log or the process's stderr: they are appended to ``HOME/incidents.log`` (mode
0600, created on first use), keyed by the incident id the caller is given.
"""

from __future__ import annotations

import os
import traceback
from datetime import UTC, datetime
from pathlib import Path

INCIDENT_LOG = "incidents.log"


def record_incident(root: Path, incident: str, context: str, exc: BaseException) -> Path:
    """Append one incident (time, id, context, full traceback) to the home's incident log."""
    path = root / INCIDENT_LOG
    text = "".join(traceback.format_exception(exc))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as log:
        log.write(f"--- {stamp} incident {incident}: {context}\n{text}\n")
    return path
