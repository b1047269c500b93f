"""Queries over the directory: conditions, sorting, paging, and a page with its total.

The adapter contract's reads (:meth:`~.adapter.DirectoryAdapter.find_people`,
:meth:`~.adapter.DirectoryAdapter.find_teams`) take a :class:`Query`. Its condition is a small
tree of :class:`Compare`, :class:`AllOf`, :class:`AnyOf` and :class:`Negate` over the fields
named in :data:`PERSON_FIELDS` and :data:`TEAM_FIELDS`; the SCIM layer translates SCIM filters
into it, the reference adapter into SQL ``WHERE``/``ORDER BY``/``LIMIT``/``OFFSET``, and
:func:`matches` evaluates it in Python (the in-memory adapter and the snapshot-based defaults).

Text comparisons are case-insensitive except on :data:`CASE_EXACT` fields. ``pr`` is "has a
value" (not null, not empty).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from .records import PersonRecord, TeamRecord

__all__ = [
    "CASE_EXACT",
    "PERSON_FIELDS",
    "TEAM_FIELDS",
    "AllOf",
    "AnyOf",
    "Compare",
    "Condition",
    "Negate",
    "Op",
    "Page",
    "Query",
    "matches",
    "run_query",
]

T = TypeVar("T")


class Op(enum.StrEnum):
    """Comparison operators (SCIM's, RFC 7644 §3.4.2.2)."""

    EQ = "eq"
    NE = "ne"
    CO = "co"
    SW = "sw"
    EW = "ew"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    PR = "pr"


#: Person fields a condition or a sort may name. ``id`` is the SCIM id, ``team`` a team key,
#: ``manager`` a person key, ``phone`` any of the phone numbers, ``role`` a Role value.
PERSON_FIELDS = frozenset(
    {
        "key", "id", "user_name", "email", "external_id", "first_name", "last_name",
        "display_name", "title", "active", "employee_number", "department", "manager", "team",
        "phone", "role", "created_at", "updated_at",
    }
)
#: Team fields a condition or a sort may name (``member``: a person key among the members).
TEAM_FIELDS = frozenset({"key", "id", "name", "created_at", "updated_at", "member"})
#: Fields compared case-sensitively (identifiers).
CASE_EXACT = frozenset({"key", "id", "external_id", "team", "manager", "member"})


@dataclass(frozen=True, slots=True)
class Compare:
    """``field op value`` (``value`` unused for ``pr``)."""

    field: str
    op: Op
    value: Any = None


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every term holds."""

    terms: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one term holds."""

    terms: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Negate:
    """The term does not hold."""

    term: Condition


Condition = Compare | AllOf | AnyOf | Negate


@dataclass(frozen=True, slots=True)
class Query:
    """What to find: a condition (``None``: everything), an order, and a page.

    ``order_by`` names a field (``None``: the adapter's stable default, creation order);
    ``offset`` is 0-based; ``limit`` ``None`` means every match, ``0`` only the total.
    """

    where: Condition | None = None
    order_by: str | None = None
    descending: bool = False
    offset: int = 0
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of matches and how many match in all."""

    total: int
    items: list[T] = field(default_factory=list)


def fields_of(condition: Condition | None) -> set[str]:
    """Every field a condition names."""
    if condition is None:
        return set()
    if isinstance(condition, Compare):
        return {condition.field}
    if isinstance(condition, Negate):
        return fields_of(condition.term)
    return set().union(*(fields_of(term) for term in condition.terms))


def check_fields(query: Query, allowed: frozenset[str]) -> None:
    """Refuse (``ValueError``) a query naming a field outside ``allowed``."""
    unknown = fields_of(query.where) - allowed
    if query.order_by is not None and query.order_by not in allowed:
        unknown.add(query.order_by)
    if unknown:
        raise ValueError(f"unknown query field(s): {', '.join(sorted(unknown))}")


# -- evaluation in Python -----------------------------------------------------------------


def person_value(person: PersonRecord, name: str) -> Any:
    """The value of field ``name`` of a person (a list for ``phone``)."""
    if name == "id":
        return person.scim_id
    if name == "team":
        return person.team_key
    if name == "phone":
        return [number for number in person.phones.values() if number]
    if name == "role":
        return None if person.role is None else person.role.value
    if name == "user_name":
        return person.login
    return getattr(person, name)


def team_value(team: TeamRecord, name: str) -> Any:
    """The value of field ``name`` of a team."""
    if name == "id":
        return team.scim_id
    return getattr(team, name)


def _fold(value: Any, exact: bool) -> Any:
    return value.casefold() if isinstance(value, str) and not exact else value


def _compare(actual: Any, op: Op, expected: Any, exact: bool) -> bool:
    if isinstance(actual, list):
        return any(_compare(item, op, expected, exact) for item in actual)
    if op is Op.PR:
        return actual is not None and actual != ""
    if actual is None:
        return op is Op.NE and expected is not None
    if isinstance(actual, datetime) and isinstance(expected, str):
        expected = datetime.fromisoformat(expected.replace("Z", "+00:00"))
    a, b = _fold(actual, exact), _fold(expected, exact)
    try:
        if op is Op.EQ:
            return bool(a == b)
        if op is Op.NE:
            return bool(a != b)
        if op is Op.CO:
            return isinstance(a, str) and str(b) in a
        if op is Op.SW:
            return isinstance(a, str) and a.startswith(str(b))
        if op is Op.EW:
            return isinstance(a, str) and a.endswith(str(b))
        if op is Op.GT:
            return bool(a > b)
        if op is Op.GE:
            return bool(a >= b)
        if op is Op.LT:
            return bool(a < b)
        if op is Op.LE:
            return bool(a <= b)
    except TypeError:
        return False
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover


def matches(condition: Condition | None, value_of: Callable[[str], Any]) -> bool:
    """Whether a record (its field values given by ``value_of``) satisfies ``condition``."""
    if condition is None:
        return True
    if isinstance(condition, Compare):
        exact = condition.field in CASE_EXACT
        return _compare(value_of(condition.field), condition.op, condition.value, exact)
    if isinstance(condition, Negate):
        return not matches(condition.term, value_of)
    if isinstance(condition, AllOf):
        return all(matches(term, value_of) for term in condition.terms)
    return any(matches(term, value_of) for term in condition.terms)


def run_query(
    records: Iterable[T],
    query: Query,
    value: Callable[[T, str], Any],
    default_order: Callable[[T], Any],
) -> Page[T]:
    """Filter, sort and page ``records`` in Python (what an adapter without SQL does)."""

    def holds(record: T) -> bool:
        return matches(query.where, lambda name: value(record, name))

    found = [r for r in records if holds(r)]
    found.sort(key=default_order)
    if query.order_by is not None:
        order_by = query.order_by

        def sort_key(record: T) -> tuple[bool, Any]:
            item = value(record, order_by)
            item = _fold(item, order_by in CASE_EXACT)
            return (item is None, item if item is not None else "")

        found.sort(key=sort_key, reverse=query.descending)
    stop = None if query.limit is None else query.offset + query.limit
    return Page(len(found), found[query.offset : stop])


def key_order(key: str) -> tuple[int, int | str]:
    """Numeric keys in numeric order, then the rest as text (creation order of most hosts)."""
    return (0, int(key)) if key.isdigit() else (1, key)


def one(page: Page[T]) -> T | None:
    """The first item of a page, or ``None``."""
    return page.items[0] if page.items else None


def eq(field_name: str, value: Any) -> Query:
    """The query for one record whose ``field_name`` equals ``value``."""
    return Query(Compare(field_name, Op.EQ, value), limit=1)


def all_of(terms: Sequence[Condition]) -> Condition | None:
    """``AllOf`` of the terms (``None`` for none, the term itself for one)."""
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else AllOf(tuple(terms))
