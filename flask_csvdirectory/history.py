"""The directory's history: one record of every change, from CSV runs and SCIM writes alike.

This is the data path's *record* step. :func:`record_run` is called when a run's change set has
been applied; :func:`record_scim_write` for each SCIM write. Entries are rows of
:class:`~.models.HistoryEntry`; what changed (before and after) is encrypted with the same keys
as the stored files. :func:`list_entries` pages them for the dashboard's history and the API.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from .extension import get_state
from .models import HistoryEntry, SyncRun, utcnow
from .runs import Actor

__all__ = ["details", "entry_dict", "list_entries", "record_run", "record_scim_write"]


def _encrypt(value: Any) -> bytes:
    return get_state().store.encrypt(json.dumps(value, sort_keys=True, default=str).encode())


def record_scim_write(
    org: str,
    actor: Actor,
    *,
    action: str,
    resource_type: str,
    resource_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> HistoryEntry:
    """Add the entry of one SCIM write to the session (the caller commits)."""
    entry = HistoryEntry(
        org=org,
        at=utcnow(),
        source="scim",
        action=action,
        actor_id=actor.id,
        actor_name=actor.name,
        resource_type=resource_type,
        resource_id=resource_id,
        summary=f"{resource_type} {action}",
        details=_encrypt({"before": before, "after": after}),
    )
    get_state().session.add(entry)
    return entry


def record_run(run: SyncRun, counts: dict[str, int]) -> HistoryEntry:
    """Add the entry of an applied CSV run or revert (the caller commits). Its changes, with
    their before-values, are the run's applied record; the entry keeps the counts."""
    actor_id = run.decided_by_id or run.uploaded_by_id
    actor_name = run.decided_by_name or run.uploaded_by_name
    total = sum(counts.values())
    changes = f"{total} change{'s' if total != 1 else ''}"
    reverted = getattr(run, "reverts_run_id", None)
    entry = HistoryEntry(
        org=run.org,
        at=utcnow(),
        source="csv",
        action="reverted" if reverted else "applied",
        actor_id=actor_id,
        actor_name=actor_name or "",
        run_id=run.id,
        summary=f"Revert of a CSV sync applied: {changes}" if reverted
        else f"CSV sync applied: {changes}",
        details=_encrypt({"counts": counts}),
    )
    get_state().session.add(entry)
    return entry


def details(entry: HistoryEntry) -> dict[str, Any]:
    """The decrypted ``{"before": ..., "after": ...}`` (or ``{"counts": ...}``) of an entry."""
    if entry.details is None:
        return {}
    return dict(json.loads(get_state().store.decrypt(entry.details)))


def list_entries(
    org: str, *, page: int = 1, per_page: int = 25, source: str | None = None
) -> tuple[list[HistoryEntry], int]:
    """One page of the organization's history, newest first, and the total count."""
    session = get_state().session
    where = [HistoryEntry.org == org]
    if source:
        where.append(HistoryEntry.source == source)
    total = session.scalar(select(func.count()).select_from(HistoryEntry).where(*where)) or 0
    entries = session.scalars(
        select(HistoryEntry)
        .where(*where)
        .order_by(HistoryEntry.at.desc(), HistoryEntry.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(entries), int(total)


def entry_dict(entry: HistoryEntry) -> dict[str, Any]:
    """An entry as JSON for the API (details decrypted)."""
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "source": entry.source,
        "action": entry.action,
        "actor": {"id": entry.actor_id, "name": entry.actor_name},
        "run_id": entry.run_id,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "summary": entry.summary,
        "details": details(entry),
    }
