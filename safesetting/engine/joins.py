"""The join rule: the tables of a plan form a tree rooted at the base table, and only joins
that keep every joined row to one pupil are representable.

* A pupil table joins an already-joined pupil table by ``pupil_id`` equality between the
  two nodes, optionally with ``academic_year`` equality too; nothing else. So every pupil
  node of a plan holds the same pupil's rows (the join-tree lemma in ``bounds.py``), and a
  pupil's opt-out or truncation applies to all of them.
* A public table (``schools``, ``local_authorities``) joins only many-to-one: on its own
  primary key, equal to a column of an already-joined table that the schema declares as
  referencing that key (``census.urn`` → ``schools.urn``). One pupil row then meets at most
  one public row, so the contribution bound is unchanged.
* Aliases are resolved to nodes before these checks (``parse.py``), so a column compared
  with itself, a join on ``academic_year`` alone, a chain through a public table on a column
  that is not its key, or a condition between two tables already joined is refused as
  ``unsupported_join`` with the rule that failed.

A table joined to itself under a fresh alias by ``pupil_id`` links one pupil's own rows (a
longitudinal question); its bound multiplies like any other pupil table's.
"""

from __future__ import annotations

from policies.reasons import Reason, reason
from safesetting.engine.plan import ColumnRef, Join, TableRef
from synthetic.schema import TABLES

PUPIL_KEYS = ("pupil_id", "academic_year")


class JoinError(Exception):
    """A join the rule refuses; its ``reason`` (``unsupported_join``, from the registry) says
    which rule failed."""

    def __init__(self, key: str, /, **params: object) -> None:
        self.reason: Reason = reason(key, **params)
        super().__init__(self.reason.message)

    @property
    def message(self) -> str:
        return self.reason.message


def public_key(table: str) -> str:
    """A public table's single-column primary key (what it may be joined on).

    >>> public_key("schools"), public_key("local_authorities")
    ('urn', 'la_code')
    """
    (key,) = TABLES[table].primary_key
    return key


def references(ref: ColumnRef, table: str) -> bool:
    """Whether the schema declares ``ref``'s column as a reference to public ``table``'s key.

    >>> references(ColumnRef("census", "urn"), "schools")
    True
    >>> references(ColumnRef("census", "la_code"), "schools")
    False
    """
    return (ref.column, f"{table}.{public_key(table)}") in TABLES[ref.table].foreign_keys


def attach(new: TableRef, pairs: list[tuple[ColumnRef, ColumnRef]], joined: set[str]) -> Join:
    """Check the equalities joining node ``new`` to the nodes already ``joined`` and return
    the join with each pair oriented ``(joined side, new side)``; raise ``JoinError``.

    >>> j = attach(TableRef("ks2", "ks2"),
    ...            [(ColumnRef("census", "pupil_id"), ColumnRef("ks2", "pupil_id"))], {"census"})
    >>> [(a.in_node, b.in_node) for a, b in j.on]
    [('census.pupil_id', 'ks2.pupil_id')]
    >>> attach(TableRef("ks4", "ks4"),  # doctest: +IGNORE_EXCEPTION_DETAIL
    ...        [(ColumnRef("ks4", "pupil_id"), ColumnRef("ks4", "pupil_id"))], {"census"})
    Traceback (most recent call last):
    JoinError: ks4.pupil_id is compared with itself
    """
    if not pairs:
        raise JoinError("unsupported_join.no_condition", table=new.name)
    oriented: list[tuple[ColumnRef, ColumnRef]] = []
    for a, b in pairs:
        if a == b:
            raise JoinError("unsupported_join.self", column=a.in_node, node=new.alias)
        if b.node == new.alias and a.node in joined:
            oriented.append((a, b))
        elif a.node == new.alias and b.node in joined:
            oriented.append((b, a))
        elif a.node == b.node:
            raise JoinError(
                "unsupported_join.same_table", left=a.in_node, right=b.in_node, node=new.alias
            )
        else:
            raise JoinError(
                "unsupported_join.not_linked", left=a.in_node, right=b.in_node, node=new.alias
            )
    if TABLES[new.name].private:
        _check_pupil_join(new, oriented)
    else:
        _check_public_join(new, oriented)
    return Join(new, tuple(oriented))


def _check_pupil_join(new: TableRef, pairs: list[tuple[ColumnRef, ColumnRef]]) -> None:
    for old, this in pairs:
        if not TABLES[old.table].private:
            raise JoinError("unsupported_join.pupil_to_public", table=new.name, public=old.table)
        if old.column != this.column or this.column not in PUPIL_KEYS:
            raise JoinError("unsupported_join.pupil_keys", left=old.in_node, right=this.in_node)
    columns = [this.column for _old, this in pairs]
    if "pupil_id" not in columns:
        raise JoinError("unsupported_join.year_only", node=new.alias)
    if len(columns) != len(set(columns)):
        raise JoinError("unsupported_join.same_key_twice", node=new.alias)


def _check_public_join(new: TableRef, pairs: list[tuple[ColumnRef, ColumnRef]]) -> None:
    key = public_key(new.name)
    if len(pairs) != 1:
        raise JoinError("unsupported_join.public_one_key", table=new.name, key=key)
    old, this = pairs[0]
    if this.column != key or not references(old, new.name):
        referencing = sorted(
            f"{t.name}.{col}"
            for t in TABLES.values()
            for col, target in t.foreign_keys
            if target == f"{new.name}.{key}"
        )
        raise JoinError(
            "unsupported_join.public_key",
            table=new.name,
            key=key,
            referencing=", ".join(referencing),
            left=old.in_node,
            right=this.in_node,
        )
