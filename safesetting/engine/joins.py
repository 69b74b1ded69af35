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

from safesetting.engine.plan import ColumnRef, Join, TableRef
from synthetic.schema import TABLES

PUPIL_KEYS = ("pupil_id", "academic_year")


class JoinError(Exception):
    """A join the rule refuses; ``message`` says which rule failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
        raise JoinError(f"joining {new.name} needs USING (...) or ON a = b")
    oriented: list[tuple[ColumnRef, ColumnRef]] = []
    for a, b in pairs:
        if a == b:
            raise JoinError(
                f"{a.in_node} is compared with itself: a join condition must link the table "
                f"being joined ({new.alias}) to one already joined"
            )
        if b.node == new.alias and a.node in joined:
            oriented.append((a, b))
        elif a.node == new.alias and b.node in joined:
            oriented.append((b, a))
        elif a.node == b.node:
            raise JoinError(
                f"{a.in_node} = {b.in_node} compares two columns of one table: a join "
                f"condition must link {new.alias} to a table already joined"
            )
        else:
            raise JoinError(
                f"{a.in_node} = {b.in_node} does not link {new.alias} to a table already "
                "joined: each condition of a join names the table being joined on one side"
            )
    if TABLES[new.name].private:
        _check_pupil_join(new, oriented)
    else:
        _check_public_join(new, oriented)
    return Join(new, tuple(oriented))


def _check_pupil_join(new: TableRef, pairs: list[tuple[ColumnRef, ColumnRef]]) -> None:
    for old, this in pairs:
        if not TABLES[old.table].private:
            raise JoinError(
                f"pupil table {new.name} cannot join public table {old.table}: pupil tables "
                "join a pupil table by pupil_id"
            )
        if old.column != this.column or this.column not in PUPIL_KEYS:
            raise JoinError(
                f"{old.in_node} = {this.in_node}: pupil tables join only by pupil_id "
                "(optionally also academic_year) with the same column on both sides"
            )
    columns = [this.column for _old, this in pairs]
    if "pupil_id" not in columns:
        raise JoinError(
            f"{new.alias} must join by pupil_id: a join on academic_year alone would pair "
            "different pupils' rows"
        )
    if len(columns) != len(set(columns)):
        raise JoinError(f"{new.alias} joins on the same column twice: give each key once")


def _check_public_join(new: TableRef, pairs: list[tuple[ColumnRef, ColumnRef]]) -> None:
    key = public_key(new.name)
    if len(pairs) != 1:
        raise JoinError(f"{new.name} joins on its key {key} alone, from one column")
    old, this = pairs[0]
    if this.column != key or not references(old, new.name):
        referencing = sorted(
            f"{t.name}.{col}"
            for t in TABLES.values()
            for col, target in t.foreign_keys
            if target == f"{new.name}.{key}"
        )
        raise JoinError(
            f"{new.name} joins only many-to-one on its key {key}, from a column that "
            f"references it ({', '.join(referencing)}), not {old.in_node} = {this.in_node}"
        )
