"""The home folder: where the data, the policy, the control database and the key live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from safesetting.errors import UsageError

DEFAULT_HOME = "./safesetting-home"
#: Set by ``serve`` for its workers: connect as this PostgreSQL application role.
DB_ROLE_ENV = "SAFESETTING_DB_ROLE"


@dataclass(frozen=True)
class Home:
    """Paths inside one safe setting's home folder."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        """``--home``, else ``SAFESETTING_HOME``, else ``./safesetting-home``."""
        chosen = home or os.environ.get("SAFESETTING_HOME") or DEFAULT_HOME
        return cls(Path(chosen).expanduser().resolve())

    @property
    def database(self) -> Path:
        return self.root / "npd.duckdb"

    @property
    def policy(self) -> Path:
        return self.root / "policy.toml"

    @property
    def control_db(self) -> Path:
        return self.root / "control.db"

    @property
    def signing_key(self) -> Path:
        return self.root / "checkpoint.key"

    @property
    def service_secret(self) -> Path:
        """The PostgreSQL application role's password (0600; see ``store/roles.py``)."""
        return self.root / "service-db.secret"

    @property
    def owner_db_url(self) -> str:
        """SQLAlchemy URL of the control database as the operator gave it (``SAFESETTING_DB_URL``
        wins over the home's SQLite file): on PostgreSQL, the tables' owner."""
        return os.environ.get("SAFESETTING_DB_URL") or f"sqlite:///{self.control_db}"

    @property
    def db_url(self) -> str:
        """The URL this process connects with: :attr:`owner_db_url`, except that on
        PostgreSQL with ``SAFESETTING_DB_ROLE`` set (``serve`` sets it for its workers) the
        user is that application role and the password comes from :attr:`service_secret`."""
        url = self.owner_db_url
        role = os.environ.get(DB_ROLE_ENV)
        if not role or url.startswith("sqlite"):
            return url
        from safesetting.store.roles import read_secret, service_url

        return service_url(url, role, read_secret(self.service_secret))

    def exists(self) -> bool:
        """A home is a folder holding ``policy.toml`` (written by ``safesetting init``)."""
        return self.policy.is_file()

    def require(self) -> Home:
        """This home, or ``UsageError`` (exit 2) naming what to do: nothing is created."""
        if not self.exists():
            where = "is not a safe setting home" if self.root.is_dir() else "does not exist"
            raise UsageError(
                f"{self.root} {where}: run `safesetting --home {self.root} init` to create "
                "it, or set SAFESETTING_URL to use a remote safe setting"
            )
        return self

    def ensure(self) -> Path:
        """Create the folder (only ``init``, ``data generate`` and ``demo`` call this)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root
