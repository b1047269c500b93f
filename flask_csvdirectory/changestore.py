"""A run's change set stored for paging: encrypted pages of changes beside a small index.

A change set of 100k changes used to be one encrypted blob that every review page and every API
page decrypted and parsed whole. It is now stored as files of the run in the encrypted file
store (:class:`~.storage.FileStore`), each encrypted on its own:

- ``changeset`` — the **index** (:data:`MAGIC` then compressed JSON): counts by kind, the
  structural count, how many access changes reduce access, the admins who lose access (what the
  review leads with), the page size and count, and the **segments**: runs of consecutive plan
  positions of one kind (access changes split into reduced and widened) listed in review order
  (destructive first). A kind filter, the review order and the apply order are computed from
  the segments without reading a change.
- ``csXXXX.00000``, ``csXXXX.00001``, ... — **pages** of :data:`PAGE_SIZE` changes in plan
  order: the canonical JSON of their rows (the bytes the fingerprint hashes) and the
  :class:`~.review.Who` of each person they touch (what the review shows beside a change).
- ``csXXXX.s0000``, ... — the **search text** in chunks of :data:`SEARCH_CHUNK`
  lines: one case-folded line per change, in review order, with what :func:`~.review.matches`
  searches (email, name, team before and after, ...). A search scans the chunks one at a time
  (memory bounded by a chunk) and then reads only the pages it shows.

``XXXX`` is new for each recording (the index names it), so a reader holding an index never
reads a later plan's pages under it: a re-plan (at approval, when the directory changed) writes
new names, and a page gone from under a reader is :class:`~.errors.PlanReplaced` (409), never
another plan's changes.

A page request therefore decrypts the index and the one or two pages it shows. Readers of the
whole set (apply, revert, notifications, downloads) stream the pages. Runs recorded before this
format keep their single blob (and their ``people`` file) and are read through
:class:`LegacyChanges`, the old way.
"""

from __future__ import annotations

import json
import secrets
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import review
from .changes import Change, ChangeKind, ChangeSet, Fingerprinter, kind_of
from .errors import CSVDirectoryError, PlanReplaced
from .models import StoredFile, SyncRun
from .planner import gc_paused
from .records import normalize_email
from .storage import FileStore

#: The first bytes of a paged index (an old single-blob change set starts with zlib's header).
MAGIC = b"csvdirectory-changes/2\n"
#: Changes per stored page: a review page (50) or an API page (up to 100) reads one or two.
PAGE_SIZE = 256
#: Role prefix of every recording's pages and search text (``csXXXX.00000``, ``csXXXX.s0000``).
PREFIX = "cs"
#: Lines (changes) per stored chunk of the search text.
SEARCH_CHUNK = 8192
INDEX_ROLE = "changeset"
#: The people index of runs recorded before pages (the paged format keeps people in pages).
LEGACY_PEOPLE_ROLE = "people"
#: Pages read per query when the whole set is streamed.
_STREAM_BATCH = 16

_who_row = attrgetter(*(name for name in review.WHO_FIELDS))
_PERSON_KINDS = review.PERSON_KINDS
_SEARCH_KEYS = frozenset(("email", "first_name", "last_name", "team", "name"))
#: Kinds whose changes may take access from an admin (see :func:`~.review.affects_admin`).
_ADMIN_LOSS_KINDS = frozenset(
    {ChangeKind.EMPLOYEE_DEACTIVATED, ChangeKind.ACCESS_REVOKED, ChangeKind.ACCESS_CHANGED}
)


def recording_prefix() -> str:
    """A new role prefix for one recording's files (``csXXXX.``; roles fit 16 characters)."""
    return f"{PREFIX}{secrets.token_hex(2)}."


def page_role(prefix: str, number: int) -> str:
    """The role of page ``number`` (0-based) of the recording with ``prefix``."""
    return f"{prefix}{number:05d}"


def search_role(prefix: str, number: int) -> str:
    """The role of chunk ``number`` (0-based) of the search text of the recording ``prefix``."""
    return f"{prefix}s{number:04d}"


def _segment_rank(kind: str, reduced: bool) -> int:
    """:func:`~.review.review_rank` of every change of a segment."""
    if kind == ChangeKind.EMPLOYEE_DEACTIVATED.value:
        return 0
    if kind == ChangeKind.ACCESS_REVOKED.value:
        return 1
    if reduced:
        return 2
    return 3 + kind_of(kind).order


# -- writing --------------------------------------------------------------------------------


def _segments(changes: Sequence[Change]) -> list[list[Any]]:
    """Runs of consecutive positions with one (kind, reduced), in review order."""
    runs: list[list[Any]] = []
    changed = ChangeKind.ACCESS_CHANGED
    previous: tuple[str, bool] | None = None
    for position, change in enumerate(changes):
        key = (change.kind.value, change.kind is changed and review.access_reduced(change))
        if key == previous:
            runs[-1][3] = position + 1
        else:
            runs.append([key[0], key[1], position, position + 1])
            previous = key
    runs.sort(key=lambda seg: (_segment_rank(seg[0], seg[1]), seg[2]))
    return runs


def _haystack(change: Change, email: str | None, who: review.Who | None) -> str:
    """What :func:`~.review.matches` searches in one change, fields joined by ``\\x1f``
    (``email``: the normalised subject of a change about a person, ``who``: that person when
    the people index knows them)."""
    if who is not None:
        parts = [change.subject, who.email, who.name, who.team_before or "", who.team_after or ""]
        if who.teams_before:
            parts += who.teams_before
        if who.teams_after:
            parts += who.teams_after
    elif email is not None:
        parts = [change.subject, email]
    else:
        parts = [change.subject]
    for values in (change.before, change.after):
        if not values:
            continue
        for key, value in values.items():
            if key in _SEARCH_KEYS:
                if isinstance(value, str):
                    parts.append(value)
            elif key == "teams" and isinstance(value, list):
                parts += [str(team) for team in value]
    line = "\x1f".join(dict.fromkeys(parts))  # an email or team is often there twice
    if "\n" in line:
        line = line.replace("\n", " ")
    return line


def record(
    store: FileStore, session: Session, run: SyncRun, changeset: ChangeSet, people: review.People
) -> str:
    """Store ``changeset`` of ``run`` as an index, pages and search text (replacing what the run
    stored before, paged or not) and return its fingerprint (:meth:`ChangeSet.fingerprint`),
    hashed from the pages' bytes as they are written: no one large string is built."""
    changes = changeset.changes
    with gc_paused():
        segments = _segments(changes)
        # each change's person (normalised email, and who they are when known), once
        emails = [
            normalize_email(change.subject) if change.kind in _PERSON_KINDS else None
            for change in changes
        ]
        known = people.by_email
        whos = [known.get(email) if email is not None else None for email in emails]
        admins: dict[str, review.Who] = {}
        for change in changes:
            if change.kind in _ADMIN_LOSS_KINDS and review.affects_admin(change, people):
                who = people.of(change)
                assert who is not None
                admins.setdefault(who.email, who)
        counts = changeset.counts()
        reduced = sum(seg[3] - seg[2] for seg in segments if seg[1])
        pages = -(-len(changes) // PAGE_SIZE)
        prefix = recording_prefix()
        index = {
            "count": len(changes),
            "structural": changeset.structural_count,
            "counts": counts,
            "reduced": reduced,
            "page_size": PAGE_SIZE,
            "pages": pages,
            "prefix": prefix,
            "search_chunk": SEARCH_CHUNK,
            "search_chunks": -(-len(changes) // SEARCH_CHUNK),
            "segments": segments,
            "admins": [list(_who_row(who)) for who in admins.values()],
        }
        store.delete_prefixed(session, run, PREFIX)
        store.delete_prefixed(session, run, LEGACY_PEOPLE_ROLE)  # re-planned after an upgrade
        store.put(
            session, run, INDEX_ROLE, "changes.index.json.z",
            MAGIC + zlib.compress(json.dumps(index, separators=(",", ":")).encode(), 1),
        )
        session.flush()
        hasher = Fingerprinter()

        def files() -> Iterator[tuple[str, str, bytes]]:
            for number, (_, canonical) in enumerate(changeset.canonical_chunks(PAGE_SIZE)):
                hasher.add(canonical)
                start = number * PAGE_SIZE
                who = {
                    found.email: found
                    for found in whos[start : start + PAGE_SIZE]
                    if found is not None
                }
                rows = [_who_row(found) for found in who.values()]
                page = canonical + b"\n" + json.dumps(rows).encode()
                compressed = zlib.compress(page, 1)
                yield page_role(prefix, number), f"changes.{number:05d}.json.z", compressed
            review_order = (
                position for seg in segments for position in range(seg[2], seg[3])
            )
            lines: list[str] = []
            number = 0
            for position in review_order:
                lines.append(_haystack(changes[position], emails[position], whos[position]))
                if len(lines) == SEARCH_CHUNK:
                    yield _search_file(prefix, number, lines)
                    number, lines = number + 1, []
            if lines:
                yield _search_file(prefix, number, lines)

        store.put_many(session, run, files())
    return hasher.hexdigest()


def _search_file(prefix: str, number: int, lines: list[str]) -> tuple[str, str, bytes]:
    text = "\n".join(lines).casefold().encode()
    return search_role(prefix, number), f"changes.search.{number:04d}.z", zlib.compress(text, 1)


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewPage:
    """One page of the review: the matching total, this page's changes (in review order) and
    who they touch."""

    total: int
    changes: list[Change]
    people: review.People


class StoredChanges:
    """A run's stored change set, read as little as each question needs."""

    @property
    def count(self) -> int:
        """Every change."""
        raise NotImplementedError

    @property
    def structural_count(self) -> int:
        """The changes that count toward the approval threshold."""
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        """How many changes of each kind (every kind, zeros included), in apply order."""
        raise NotImplementedError

    def summary(self) -> review.Summary:
        """What the review leads with: counts, destructive first, and admins losing access."""
        raise NotImplementedError

    def review_page(
        self, *, kind: str | None = None, query: str = "", offset: int = 0, limit: int = 50
    ) -> ReviewPage:
        """The changes of one kind (or ``access_reduced``) matching ``query``, in review order,
        from ``offset``: what :func:`~.review.select` gives, one page of it."""
        raise NotImplementedError

    def apply_page(
        self, *, kind: ChangeKind | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[int, list[Change]]:
        """The matching total and the changes (optionally of one kind) from ``offset`` in plan
        (apply) order."""
        raise NotImplementedError

    def head(self, limit: int) -> list[Change]:
        """The first ``limit`` changes in plan order."""
        return self.apply_page(offset=0, limit=max(limit, 0))[1]

    def changeset(self) -> ChangeSet:
        """The whole change set."""
        raise NotImplementedError

    def people(self) -> review.People:
        """Who every change touches."""
        raise NotImplementedError


class LegacyChanges(StoredChanges):
    """A change set stored as one blob (runs recorded before pages): read whole, as before."""

    def __init__(
        self, changeset: ChangeSet, people: review.People | Callable[[], review.People]
    ) -> None:
        self._changeset = changeset
        self._people_source = people
        self._loaded: review.People | None = people if isinstance(people, review.People) \
            else None

    @property
    def _people(self) -> review.People:
        """The people index, read when first needed (a revert needs only the changes)."""
        if self._loaded is None:
            assert not isinstance(self._people_source, review.People)
            self._loaded = self._people_source()
        return self._loaded

    @property
    def count(self) -> int:
        return self._changeset.count

    @property
    def structural_count(self) -> int:
        return self._changeset.structural_count

    def counts(self) -> dict[str, int]:
        return self._changeset.counts()

    def summary(self) -> review.Summary:
        return review.summarize(self._changeset, self._people)

    def review_page(
        self, *, kind: str | None = None, query: str = "", offset: int = 0, limit: int = 50
    ) -> ReviewPage:
        chosen = review.select(self._changeset, self._people, kind=kind, query=query)
        offset = max(offset, 0)
        return ReviewPage(len(chosen), chosen[offset : offset + limit], self._people)

    def apply_page(
        self, *, kind: ChangeKind | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[int, list[Change]]:
        changes = self._changeset.of_kind(kind) if kind else self._changeset.changes
        offset = max(offset, 0)
        return len(changes), changes[offset : offset + limit]

    def changeset(self) -> ChangeSet:
        return self._changeset

    def people(self) -> review.People:
        return self._people


class PagedChanges(StoredChanges):
    """A change set stored as an index and pages: each question reads the pages it shows."""

    def __init__(self, store: FileStore, session: Session, run_id: str, index: dict[str, Any]):
        self._store = store
        self._session = session
        self._run_id = run_id
        self._index = index
        self._page_size: int = index["page_size"]
        self._prefix: str = index["prefix"]
        self._segments: list[list[Any]] = index["segments"]
        #: pages read so far: their rows and who rows (by email) as parsed from JSON
        self._raw: dict[int, tuple[list[Any], dict[str, list[Any]]]] = {}

    @property
    def count(self) -> int:
        return int(self._index["count"])

    @property
    def structural_count(self) -> int:
        return int(self._index["structural"])

    @property
    def page_count(self) -> int:
        """How many pages are stored."""
        return int(self._index["pages"])

    def counts(self) -> dict[str, int]:
        stored: dict[str, int] = self._index["counts"]
        return {kind.value: int(stored.get(kind.value, 0)) for kind in ChangeKind}

    def summary(self) -> review.Summary:
        admins = [review.Who(*row) for row in self._index["admins"]]
        return review.summary_from(self.counts(), self._index["reduced"], admins)

    # -- segments -------------------------------------------------------------------------

    def _review_segments(self, kind: str | None) -> list[list[Any]]:
        if not kind:
            return self._segments
        if kind == review.ACCESS_REDUCED:
            return [seg for seg in self._segments if seg[1]]
        return [seg for seg in self._segments if seg[0] == kind]

    @staticmethod
    def _positions(segments: Iterable[list[Any]], offset: int, limit: int) -> list[int]:
        """Positions ``offset`` to ``offset + limit`` of the concatenated segments."""
        positions: list[int] = []
        skip = max(offset, 0)
        for seg in segments:
            start, end = seg[2], seg[3]
            length = end - start
            if skip >= length:
                skip -= length
                continue
            take = min(end, start + skip + limit - len(positions))
            positions.extend(range(start + skip, take))
            skip = 0
            if len(positions) >= limit:
                break
        return positions

    # -- pages ----------------------------------------------------------------------------

    def _fetch(self, roles: list[str]) -> dict[str, bytes]:
        """The decrypted files ``roles`` of this recording; :class:`~.errors.PlanReplaced` when
        the run was re-planned since its index was read (its files are gone)."""
        try:
            return self._store.get_many(self._session, self._run_id, roles)
        except CSVDirectoryError:
            still_there = self._session.scalar(
                select(func.count()).select_from(StoredFile).where(
                    StoredFile.run_id == self._run_id, StoredFile.role.in_(roles)
                )
            )
            if still_there != len(roles):
                raise PlanReplaced() from None
            raise  # stored but purged: the store's own message

    def _load(self, numbers: Iterable[int]) -> None:
        wanted = sorted({n for n in numbers if n not in self._raw})
        if not wanted:
            return
        roles = [page_role(self._prefix, n) for n in wanted]
        data = self._fetch(roles)
        for number, role in zip(wanted, roles, strict=True):
            self._raw[number] = _parse_raw(data.pop(role))

    def _at(self, positions: Sequence[int]) -> tuple[list[Change], review.People]:
        """The changes at ``positions`` and who they touch: only those rows become objects."""
        size = self._page_size
        self._load(position // size for position in positions)
        people: dict[str, review.Who] = {}
        changes: list[Change] = []
        from_row, who_class = Change.from_row, review.Who
        for position in positions:
            rows, who_rows = self._raw[position // size]
            change = from_row(rows[position % size])
            changes.append(change)
            if change.kind in _PERSON_KINDS:
                email = normalize_email(change.subject)
                row = who_rows.get(email)
                if row is not None and email not in people:
                    people[email] = who_class(*row)
        return changes, review.People(people)

    def iter_pages(self) -> Iterator[tuple[list[Change], dict[str, review.Who]]]:
        """Every page in plan order (read a few at a time, none kept)."""
        for first in range(0, self.page_count, _STREAM_BATCH):
            numbers = range(first, min(first + _STREAM_BATCH, self.page_count))
            roles = [page_role(self._prefix, n) for n in numbers]
            data = self._fetch(roles)
            for role in roles:
                yield _parse_page(data.pop(role))

    # -- questions ------------------------------------------------------------------------

    def review_page(
        self, *, kind: str | None = None, query: str = "", offset: int = 0, limit: int = 50
    ) -> ReviewPage:
        segments = self._review_segments(kind)
        needle = query.casefold().strip()
        if not needle:
            total = sum(seg[3] - seg[2] for seg in segments)
            positions = self._positions(segments, offset, limit)
        elif "\n" in needle or "\x1f" in needle:  # cannot use the search text's separators
            chosen = review.select(self.changeset(), self.people(), kind=kind, query=query)
            offset = max(offset, 0)
            return ReviewPage(len(chosen), chosen[offset : offset + limit], self.people())
        else:
            total, positions = self._search(needle, segments, max(offset, 0), limit)
        changes, people = self._at(positions)
        return ReviewPage(total, changes, people)

    def _search(
        self, needle: str, segments: list[list[Any]], offset: int, limit: int
    ) -> tuple[int, list[int]]:
        """How many changes within ``segments`` hold ``needle`` in their search line, and the
        plan positions of matches ``offset`` to ``offset + limit`` (review order). The search
        text is scanned one chunk at a time."""
        # review offset -> segment: the search text lists every segment's changes in order
        starts: list[int] = []
        cursor = 0
        for seg in self._segments:
            starts.append(cursor)
            cursor += seg[3] - seg[2]
        allowed = {id(seg) for seg in segments}
        every = len(allowed) == len(self._segments)
        chunk_lines: int = self._index["search_chunk"]
        total = 0
        positions: list[int] = []
        for number in range(self._index["search_chunks"]):
            role = search_role(self._prefix, number)
            data = self._fetch([role])[role]
            base = number * chunk_lines
            for line in _matching_lines(zlib.decompress(data).decode(), needle):
                review_offset = base + line
                at = bisect_right(starts, review_offset) - 1
                seg = self._segments[at]
                if not every and id(seg) not in allowed:
                    continue
                if offset <= total < offset + limit:
                    positions.append(seg[2] + review_offset - starts[at])
                total += 1
        return total, positions

    def apply_page(
        self, *, kind: ChangeKind | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[int, list[Change]]:
        if kind is None:
            total = self.count
            start = max(offset, 0)
            positions = list(range(start, min(start + max(limit, 0), total)))
        else:
            segments = sorted(
                (seg for seg in self._segments if seg[0] == kind.value), key=lambda s: s[2]
            )
            total = sum(seg[3] - seg[2] for seg in segments)
            positions = self._positions(segments, offset, limit)
        return total, self._at(positions)[0]

    def changeset(self) -> ChangeSet:
        changes: list[Change] = []
        for page_changes, _ in self.iter_pages():
            changes.extend(page_changes)
        return ChangeSet(changes)

    def people(self) -> review.People:
        found: dict[str, review.Who] = {}
        for _, page_people in self.iter_pages():
            found.update(page_people)
        return review.People(found)

    def changeset_and_people(self) -> tuple[ChangeSet, review.People]:
        """Both whole, from one pass over the pages."""
        changes: list[Change] = []
        found: dict[str, review.Who] = {}
        for page_changes, page_people in self.iter_pages():
            changes.extend(page_changes)
            found.update(page_people)
        return ChangeSet(changes), review.People(found)


def _parse_raw(data: bytes) -> tuple[list[Any], dict[str, list[Any]]]:
    """A page's change rows and who rows (by email), as JSON gives them."""
    rows_json, _, who_json = zlib.decompress(data).partition(b"\n")
    return json.loads(rows_json), {row[0]: row for row in json.loads(who_json)}


def _parse_page(data: bytes) -> tuple[list[Change], dict[str, review.Who]]:
    rows, who_rows = _parse_raw(data)
    from_row, who_class = Change.from_row, review.Who
    with gc_paused():
        changes = [from_row(row) for row in rows]
        people = {email: who_class(*row) for email, row in who_rows.items()}
    return changes, people


def _matching_lines(text: str, needle: str) -> list[int]:
    """0-based numbers of the lines of ``text`` that contain ``needle`` (no newline in it)."""
    found: list[int] = []
    line = 0
    counted = 0
    at = text.find(needle)
    while at != -1:
        line += text.count("\n", counted, at)
        found.append(line)
        end = text.find("\n", at)
        if end == -1:
            break
        line += 1
        counted = end + 1
        at = text.find(needle, counted)
    return found


def open_changes(
    store: FileStore, session: Session, run: SyncRun, role: str = INDEX_ROLE
) -> StoredChanges | None:
    """The change set ``run`` stores as ``role`` (``changeset``, or ``applied``: the record of
    what it applied), paged or in the old single blob; ``None`` when it stores none.
    :class:`~.errors.CSVDirectoryError` when it was purged."""
    row = session.execute(
        select(StoredFile.ciphertext).where(StoredFile.run_id == run.id, StoredFile.role == role)
    ).first()
    if row is None:
        return None
    if row[0] is None:
        raise CSVDirectoryError(f"The {role} file of this run is no longer stored")
    data = store.decrypt(row[0])
    if data.startswith(MAGIC):
        index = json.loads(zlib.decompress(data[len(MAGIC) :]))
        return PagedChanges(store, session, run.id, index)
    changeset = ChangeSet.from_bytes(data)
    del data
    run_id = run.id

    def people() -> review.People:
        token = session.scalar(
            select(StoredFile.ciphertext).where(
                StoredFile.run_id == run_id, StoredFile.role == LEGACY_PEOPLE_ROLE
            )
        )
        return review.People.from_bytes(store.decrypt(token)) if token else review.People()

    return LegacyChanges(changeset, people)
