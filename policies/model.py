"""The policy document as strict, frozen models (unknown keys refused).

A :class:`Policy` is what ``policy.toml`` says, validated: column classes (defaults from the
schema declaration, overridable), the purposes allowed and refused, limits by organisation
type, ``min_cell_count``, ε per query, the dataset-wide ε cap and retention. ε values are
held as integer micro-ε (see :mod:`policies.epsilon`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from policies.epsilon import to_micro
from synthetic.schema import PUBLIC_TABLES, TABLES, column_classes

ClassName = Literal[
    "direct_identifier", "quasi_identifier", "special_category", "restricted", "general"
]
OrgType = Literal["academic", "government", "charity", "commercial", "press"]
ORG_TYPES: Final[tuple[str, ...]] = ("academic", "government", "charity", "commercial", "press")
# Refused whatever a policy file says: the reason the safe setting exists.
ALWAYS_REFUSED: Final[tuple[str, ...]] = (
    "immigration_enforcement",
    "policing",
    "commercial_marketing",
)
# The privacy unit: the one direct identifier usable as a join key or in COUNT(DISTINCT …).
PRIVACY_UNIT: Final = "pupil_id"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _epsilon(value: object) -> int:
    """TOML ε (integer or decimal text parsed as ``Decimal``) → micro-ε; floats refused."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str | Fraction):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return to_micro(value)


MicroEpsilon = Annotated[int, BeforeValidator(_epsilon), Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Purposes(_Model):
    """Purposes a project may be approved for, and those refused outright."""

    allowed: tuple[StrictStr, ...]
    educational: tuple[StrictStr, ...]
    refused: tuple[StrictStr, ...]

    @field_validator("allowed", "educational", "refused")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _NAME.match(name):
                raise ValueError(f"purpose {name!r} is not a snake_case name")
        if len(set(names)) != len(names):
            raise ValueError("lists a purpose twice")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> Purposes:
        if missing := [p for p in ALWAYS_REFUSED if p not in self.refused]:
            raise ValueError(f"refused must include {', '.join(missing)}")
        if both := sorted(set(self.allowed) & set(self.refused)):
            raise ValueError(f"purposes both allowed and refused: {', '.join(both)}")
        if stray := sorted(set(self.educational) - set(self.allowed)):
            raise ValueError(f"educational purposes not in allowed: {', '.join(stray)}")
        return self


class OrgLimits(_Model):
    """Stricter limits for one organisation type (absent: the policy-wide limits apply)."""

    max_epsilon_per_query: MicroEpsilon | None = None
    max_budget_epsilon: MicroEpsilon | None = None
    special_category_allowed: StrictBool = True
    restricted_allowed: StrictBool = True


class Releases(_Model):
    """How released answers are reused."""

    share_across_projects: StrictBool = False


class Limits(_Model):
    """What one client, token or query may ask of the service (its self-defence).

    Rates are token buckets kept by each server worker: ``*_per_second`` refills, ``*_burst``
    is the most that may arrive at once. A query's cost is cells × aggregates × rows, where
    rows is the public bound on the rows it reads (declared pupils × rows per pupil), known
    before anything runs."""

    requests_per_second_per_client: float = Field(default=20.0, gt=0, le=1e6, strict=True)
    burst_per_client: StrictInt = Field(default=60, ge=1, le=1_000_000)
    requests_per_second_per_token: float = Field(default=10.0, gt=0, le=1e6, strict=True)
    burst_per_token: StrictInt = Field(default=30, ge=1, le=1_000_000)
    failed_login_window_seconds: StrictInt = Field(default=60, ge=1, le=86_400)
    concurrent_queries_per_researcher: StrictInt = Field(default=2, ge=1, le=1000)
    max_query_cost: StrictInt = Field(default=10**12, ge=1, le=10**18)


class EpsilonLimits(_Model):
    """ε per query and the dataset-wide cap, in micro-ε."""

    default_per_query: MicroEpsilon
    max_per_query: MicroEpsilon
    dataset_cap: MicroEpsilon

    @model_validator(mode="after")
    def _ordered(self) -> EpsilonLimits:
        if self.default_per_query > self.max_per_query:
            raise ValueError("default_per_query is more than max_per_query")
        if self.max_per_query > self.dataset_cap:
            raise ValueError("max_per_query is more than dataset_cap")
        return self


class Policy(_Model):
    """The whole policy document."""

    version: Literal[1] = 1
    min_cell_count: StrictInt = Field(ge=0, le=1000)
    retention_years: StrictInt = Field(ge=1, le=100)
    epsilon: EpsilonLimits
    purposes: Purposes
    organisation_types: dict[OrgType, OrgLimits]  # every OrgType present (validated)
    columns: dict[StrictStr, ClassName] = Field(default_factory=dict)
    releases: Releases = Field(default_factory=Releases)
    limits: Limits = Field(default_factory=Limits)

    @field_validator("organisation_types")
    @classmethod
    def _all_org_types(cls, orgs: dict[str, OrgLimits]) -> dict[str, OrgLimits]:
        if missing := [o for o in ORG_TYPES if o not in orgs]:
            raise ValueError(f"missing organisation types: {', '.join(missing)}")
        return orgs

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        defaults = column_classes()
        for name, cls_name in columns.items():
            if name not in defaults:
                raise ValueError(f"{name!r} is not a column in the schema (write table.column)")
            if defaults[name] == "direct_identifier" and cls_name != "direct_identifier":
                raise ValueError(f"{name} is a direct identifier; a policy cannot relax that")
        return columns

    def column_class(self, column: str) -> str | None:
        """The effective class of ``table.column`` (override, else schema default; None if unknown).

        >>> from policies.load import default_policy
        >>> default_policy().column_class("census.ethnicity_major")
        'special_category'
        """
        if column in self.columns:
            return self.columns[column]
        default = column_classes().get(column)
        return None if default is None else default.value

    def effective_columns(self) -> MappingProxyType[str, str]:
        """Every schema column with its effective class."""
        merged = {name: cls.value for name, cls in column_classes().items()}
        merged.update(self.columns)
        return MappingProxyType(merged)

    @staticmethod
    def is_public_table(table: str) -> bool:
        """Public reference tables (schools, local authorities) need no approval."""
        return table in PUBLIC_TABLES

    @staticmethod
    def is_known_table(table: str) -> bool:
        return table in TABLES

    def org_limits(self, org_type: str) -> OrgLimits | None:
        """Limits for ``org_type``; None for a type the policy does not know."""
        for name, limits in self.organisation_types.items():
            if name == org_type:
                return limits
        return None
