"""The change set: exactly what a sync will do to the host's directory.

A change kind is data (:class:`ChangeKind` with its label and apply order), not a branch spread
through the code: the planner emits :class:`Change` records, the review pages render them by kind,
and the adapter applies them kind by kind.
"""

from __future__ import annotations

import enum
import gc
import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


class ChangeKind(enum.StrEnum):
    """Every kind of change a sync can make, in the order they are applied."""

    TEAM_CREATED = "team_created"
    EMPLOYEE_CREATED = "employee_created"
    EMPLOYEE_REACTIVATED = "employee_reactivated"
    EMPLOYEE_UPDATED = "employee_updated"
    EMPLOYEE_MOVED = "employee_moved"
    EMPLOYEE_DEACTIVATED = "employee_deactivated"
    ACCESS_GRANTED = "access_granted"
    ACCESS_CHANGED = "access_changed"
    ACCESS_REVOKED = "access_revoked"

    @property
    def label(self) -> str:
        """What a person reads: "Employees created", "Access revoked", ..."""
        return _LABELS[self]

    @property
    def order(self) -> int:
        """Position in the apply order (teams first, then people, then access)."""
        return _ORDER[self]

    @property
    def structural(self) -> bool:
        """Whether every change of this kind is structural (see :attr:`Change.structural`)."""
        return self is not ChangeKind.EMPLOYEE_UPDATED


_LABELS = {
    ChangeKind.TEAM_CREATED: "Teams created",
    ChangeKind.EMPLOYEE_CREATED: "Employees created",
    ChangeKind.EMPLOYEE_REACTIVATED: "Employees reactivated",
    ChangeKind.EMPLOYEE_UPDATED: "Employees updated",
    ChangeKind.EMPLOYEE_MOVED: "Employees moved between teams",
    ChangeKind.EMPLOYEE_DEACTIVATED: "Employees deactivated",
    ChangeKind.ACCESS_GRANTED: "Dashboard access granted",
    ChangeKind.ACCESS_CHANGED: "Dashboard access changed",
    ChangeKind.ACCESS_REVOKED: "Dashboard access revoked",
}
_ORDER = {kind: position for position, kind in enumerate(ChangeKind)}
#: value -> kind with a dict look-up (``ChangeKind(value)`` is a slow call per change)
_KIND_BY_VALUE: dict[str, ChangeKind] = {kind.value: kind for kind in ChangeKind}


def kind_of(value: str) -> ChangeKind:
    """The :class:`ChangeKind` of a stored value (a dict look-up; ``KeyError`` when unknown)."""
    return _KIND_BY_VALUE[value]


@dataclass(frozen=True, slots=True)
class Change:
    """One change to one person, team or dashboard access.

    ``subject`` is what a person reads (an email or a team name); ``key`` is the host's key of the
    person when one exists already. ``before``/``after`` hold only the fields that change:

    - team_created: after ``{"name"}``
    - employee_created: after ``{"email", "first_name", "last_name", "title", "team",
      "external_id", "extra"}``
    - employee_updated: before/after with the changed fields among ``email``, ``first_name``,
      ``last_name``, ``title``, ``external_id`` and ``extra``
    - employee_moved: before/after ``{"team"}``
    - employee_deactivated / employee_reactivated: before/after ``{"active"}``
    - access_granted: after ``{"role", "teams", "name"}``; access_changed: before/after
      ``{"role", "teams"}``; access_revoked: before ``{"role", "teams"}``
    """

    kind: ChangeKind
    subject: str
    key: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    @property
    def structural(self) -> bool:
        """Whether this change counts toward the approval threshold.

        Structural: employees created, deactivated, reactivated or moved between teams, teams
        created, dashboard access granted, changed or revoked, and an email change (the email is
        what a person signs in with). Attribute edits (first and last name, title, employee id,
        extra columns) are planned, shown and applied, but do not count.
        """
        if self.kind is not ChangeKind.EMPLOYEE_UPDATED:
            return True
        return self.after is not None and "email" in self.after

    def to_row(self) -> list[Any]:
        """A compact JSON-ready row (see :meth:`from_row`)."""
        return [self.kind.value, self.subject, self.key, self.before, self.after]

    @classmethod
    def from_row(cls, row: list[Any]) -> Change:
        """Rebuild a change from :meth:`to_row` output."""
        kind, subject, key, before, after = row
        return cls(_KIND_BY_VALUE[kind], subject, key, before, after)

    def to_dict(self) -> dict[str, Any]:
        """A readable JSON object (used by the API and the error/change downloads)."""
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "key": self.key,
            "before": self.before,
            "after": self.after,
        }


@dataclass(slots=True)
class ChangeSet:
    """An ordered list of changes with its counts and a fingerprint.

    ``fingerprint`` identifies the content: two plans with the same fingerprint do the same thing,
    which is how an approval notices that the directory drifted since the plan was made.
    """

    changes: list[Change] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __bool__(self) -> bool:
        return bool(self.changes)

    @property
    def count(self) -> int:
        """Every change record, structural or not."""
        return len(self.changes)

    @property
    def structural_count(self) -> int:
        """The number compared against the approval threshold: the structural changes
        (:attr:`Change.structural`)."""
        updated = ChangeKind.EMPLOYEE_UPDATED
        return sum(
            1
            for change in self.changes
            if change.kind is not updated or (change.after is not None and "email" in change.after)
        )

    def counts(self) -> dict[str, int]:
        """How many changes of each kind (every kind present, zeros included), in apply order."""
        tally = Counter(change.kind for change in self.changes)
        return {kind.value: tally.get(kind, 0) for kind in ChangeKind}

    def of_kind(self, *kinds: ChangeKind) -> list[Change]:
        """The changes of the given kinds, in plan order."""
        wanted = set(kinds)
        return [change for change in self.changes if change.kind in wanted]

    def sorted(self) -> ChangeSet:
        """A copy in apply order (stable within a kind)."""
        return ChangeSet(sorted(self.changes, key=lambda change: change.kind.order))

    def head(self, limit: int) -> list[Change]:
        """The first ``limit`` changes, in plan order."""
        return self.changes[: max(limit, 0)]

    def to_json(self) -> bytes:
        """The canonical JSON of the change rows (keys sorted): what is hashed and stored."""
        return canonical_json(self.changes)

    def canonical_chunks(self, size: int) -> Iterator[tuple[list[Change], bytes]]:
        """The changes in chunks of ``size``, each with its canonical JSON (:func:`canonical_json`);
        :class:`Fingerprinter` joins them into the hash of :meth:`to_json` without building it."""
        for start in range(0, len(self.changes), size):
            chunk = self.changes[start : start + size]
            yield chunk, canonical_json(chunk)

    def fingerprint(self, canonical: bytes | None = None) -> str:
        """A sha256 of the canonical content; equal fingerprints mean equal plans.

        Plans are deterministic (apply order, then subject), so the row order is part of the
        content. Pass ``canonical`` (from :meth:`to_json`) to avoid serialising twice; without
        it the hash is fed chunk by chunk (no one large string).
        """
        if canonical is not None:
            return hashlib.sha256(canonical).hexdigest()
        hasher = Fingerprinter()
        for _, chunk in self.canonical_chunks(FINGERPRINT_CHUNK):
            hasher.add(chunk)
        return hasher.hexdigest()

    def to_bytes(self, canonical: bytes | None = None) -> bytes:
        """Serialise (compressed canonical JSON) for storage with the run."""
        return zlib.compress(canonical if canonical is not None else self.to_json(), 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> ChangeSet:
        """Rebuild a change set stored with :meth:`to_bytes` (the cyclic garbage collector
        paused meanwhile: many small acyclic objects next to a large heap)."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return cls([Change.from_row(row) for row in json.loads(zlib.decompress(data))])
        finally:
            if enabled:
                gc.enable()

    @classmethod
    def of(cls, changes: Iterable[Change]) -> ChangeSet:
        """A change set from any iterable of changes, in apply order."""
        return cls(list(changes)).sorted()


#: How many changes :meth:`ChangeSet.fingerprint` serialises at a time.
FINGERPRINT_CHUNK = 2048


def canonical_json(changes: Iterable[Change]) -> bytes:
    """The canonical JSON array of the change rows (keys sorted, no spaces)."""
    # the kind is a str enum: JSON writes its value (as to_row does), without the lookup
    rows = [[c.kind, c.subject, c.key, c.before, c.after] for c in changes]
    return json.dumps(rows, separators=(",", ":"), sort_keys=True).encode()


class Fingerprinter:
    """The sha256 of a change set's canonical JSON fed chunk by chunk: ``add`` the
    :func:`canonical_json` of consecutive chunks; the digest equals
    ``sha256(ChangeSet.to_json())`` of the whole."""

    __slots__ = ("_hash", "_started")

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"[")
        self._started = False

    def add(self, chunk_json: bytes) -> None:
        """Feed the canonical JSON array of the next chunk of changes."""
        inner = chunk_json[1:-1]
        if not inner:
            return
        if self._started:
            self._hash.update(b",")
        self._hash.update(inner)
        self._started = True

    def hexdigest(self) -> str:
        """The fingerprint of everything fed so far."""
        final = self._hash.copy()
        final.update(b"]")
        return final.hexdigest()


def exceeds_threshold(
    count: int, *, threshold: int | None, percent: float | None, directory_size: int
) -> bool:
    """Whether a plan of ``count`` changes needs an admin's approval.

    It does when it is above the count ``threshold``, or above ``percent`` of the directory
    (when a percentage is set and the directory is not empty). ``None`` disables that test.
    """
    if threshold is not None and count > threshold:
        return True
    if percent is not None and directory_size > 0:
        return count * 100 > percent * directory_size
    return False
