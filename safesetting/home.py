"""The home folder: where the data, the policy, the control database and the key live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from safesetting.errors import UsageError

DEFAULT_HOME = "./safesetting-home"


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
    def db_url(self) -> str:
        """SQLAlchemy URL of the control database (``SAFESETTING_DB_URL`` wins)."""
        return os.environ.get("SAFESETTING_DB_URL") or f"sqlite:///{self.control_db}"

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
