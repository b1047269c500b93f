"""The run state machine: intake, processing, approval, apply, failure, and the sync window.

::

    start_run ──> File Processing ──(job: process)──> count <= threshold ──> apply ──> Auto-Approved
                                                  └─> count >  threshold ──> Waiting for Approval
    Waiting for Approval ──approve──> Approved by NAME ──(job: apply_approved: re-plan)──> applied
                                                                       └─ plan differs ──> Waiting
    Waiting for Approval ──reject──> Rejected by NAME
    any failure ──> Error while processing (reason shown; the directory is unchanged)
    applied run ──start_revert──> a new run, channel "revert": planned from the inverse of what
                                  the applied run changed (revert.py), then the same path

One run is open at a time per organization (from upload until it ends); the sync window counts
applied runs from ``applied_at`` (not reverts, errors or rejections). See docs/lifecycle.md.
Functions take the organization and the acting person explicitly; none needs a request, so the
web layer, the API, the CLI and the jobs all call the same code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from . import changestore, failures, guards, liveness, review, signals
from .adapter import ProgressCallback
from .changes import ChangeKind, ChangeSet, exceeds_threshold
from .checkpoints import checkpoint
from .connections import guard_apply_transaction
from .errors import (
    FileTooLarge,
    FileValidationError,
    IntegrationDisabled,
    MissingFile,
    RevertUnavailable,
    RunInProgress,
    RunNotFound,
    RunStateError,
    WindowClosed,
)
from .extension import get_state
from .locks import organization_lock
from .models import Channel, IntegrationSettings, Phase, RunStatus, StoredFile, SyncRun, utcnow
from .pipeline import ParsedPair, PlanOutcome, build_plan, plan_pair, read_pair
from .records import DirectorySnapshot
from .revert import Conflict, conflicts_from_bytes, conflicts_to_bytes, plan_revert
from .rows import EMPLOYEES_FILE, USERS_FILE, RowError


def _app() -> Flask:
    """The current app itself (signals are sent with it), not the ``current_app`` proxy."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app

#: How many row errors a run keeps (all are counted in ``error_count``).
STORED_ERRORS = 2000


@dataclass(frozen=True)
class Actor:
    """Who did something: an id (the host's user id, or a token's) and a display name."""

    id: str | None
    name: str


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its name as sent and its bytes."""

    filename: str
    data: bytes


# -- settings and the window ------------------------------------------------------------------


def get_settings(org: str) -> IntegrationSettings:
    """The organization's settings row, created (disabled, default threshold) when missing."""
    state = get_state()
    session = state.session
    settings = session.scalar(select(IntegrationSettings).where(IntegrationSettings.org == org))
    if settings is None:
        settings = IntegrationSettings(
            org=org,
            enabled=False,
            scim_enabled=False,
            scim_hard_delete=False,
            approval_threshold=state.config["DEFAULT_APPROVAL_THRESHOLD"],
            approval_percent=state.config["DEFAULT_APPROVAL_PERCENT"],
            guard_removal_percent=state.config["DEFAULT_GUARD_REMOVAL_PERCENT"],
            guard_removal_people=state.config["DEFAULT_GUARD_REMOVAL_PEOPLE"],
            intake_counter=0,
        )
        session.add(settings)
        session.commit()
    return settings


def update_settings(
    org: str,
    actor: Actor,
    *,
    enabled: bool | None = None,
    approval_threshold: int | None = None,
    approval_percent: float | None | bool = False,
    scim_enabled: bool | None = None,
    scim_hard_delete: bool | None = None,
    guard_removal_percent: float | None | bool = False,
    guard_removal_people: int | None | bool = False,
) -> IntegrationSettings:
    """Change the organization's settings (``approval_percent=None`` clears the percentage;
    ``guard_removal_percent=None`` / ``guard_removal_people=None`` turn that guard limit off;
    an argument left out keeps its setting)."""
    settings = get_settings(org)
    if enabled is not None:
        settings.enabled = enabled
    if scim_enabled is not None:
        settings.scim_enabled = scim_enabled
    if scim_hard_delete is not None:
        settings.scim_hard_delete = scim_hard_delete
    if approval_threshold is not None:
        if approval_threshold < 0:
            raise ValueError("The approval threshold cannot be negative")
        settings.approval_threshold = approval_threshold
    if approval_percent is not False:
        if approval_percent is not None and not 0 <= float(approval_percent) <= 100:
            raise ValueError("The approval percentage must be between 0 and 100")
        settings.approval_percent = approval_percent
    if guard_removal_percent is not False:
        if guard_removal_percent is not None and not 0 <= float(guard_removal_percent) <= 100:
            raise ValueError("The guard's share must be between 0 and 100 percent")
        settings.guard_removal_percent = (
            None if guard_removal_percent is None else float(guard_removal_percent)
        )
    if guard_removal_people is not False:
        if guard_removal_people is not None and int(guard_removal_people) < 0:
            raise ValueError("The guard's number of people cannot be negative")
        settings.guard_removal_people = (
            None if guard_removal_people is None else int(guard_removal_people)
        )
    settings.updated_at = utcnow()
    settings.updated_by = actor.name
    get_state().session.commit()
    return settings


def window_opens_at(org: str, now: datetime | None = None) -> datetime | None:
    """When the next upload may start, as far as the sync window goes, or ``None`` for now.

    The window counts synchronizations: a run counts from the moment its changes were
    applied (Auto-Approved, Approved by NAME). Runs that ended in Error while processing or
    Rejected by NAME synchronized nothing and do not count; reverts do not count either. The
    time is rounded up to the whole second, never down. An open run blocks uploads too, but
    separately: see :func:`open_run`.
    """
    return _window_opens_at(get_state().session, org, now or utcnow())


def _window_opens_at(session: Session, org: str, now: datetime) -> datetime | None:
    interval: timedelta = get_state().config["MIN_SYNC_INTERVAL"]
    if interval <= timedelta(0):
        return None
    # the reopening time is rounded up to the second, and that second is what is enforced
    last = session.scalar(
        select(func.max(SyncRun.applied_at)).where(
            SyncRun.org == org,
            SyncRun.applied_at.is_not(None),
            SyncRun.applied_at > now - interval - timedelta(seconds=1),
            SyncRun.channel != Channel.REVERT.value,
        )
    )
    if last is None:
        return None
    if last.tzinfo is None:  # func.max bypasses the column type on some backends
        last = last.replace(tzinfo=UTC)
    opens_at = _ceil_second(last + interval)
    return opens_at if opens_at > now else None


def _ceil_second(moment: datetime) -> datetime:
    """``moment`` rounded up to the whole second (unchanged when already whole)."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def open_run(org: str) -> SyncRun | None:
    """The organization's open run (File Processing, Waiting for Approval, or approved and not
    yet applied), which blocks any new upload or revert; ``None`` when there is none."""
    return _open_run(get_state().session, org)


def _open_run(session: Session, org: str) -> SyncRun | None:
    return session.scalar(
        select(SyncRun)
        .where(SyncRun.org == org, SyncRun.finished_at.is_(None))
        .order_by(SyncRun.created_at)
        .limit(1)
    )


def window_message(opens_at: datetime) -> str:
    """The sentence every channel shows when the window is closed (one wording everywhere)."""
    interval = _describe(get_state().config["MIN_SYNC_INTERVAL"])
    return (
        f"One synchronization per {interval} is allowed, counted from when the last one was "
        f"applied; uploads reopen at {opens_at:%Y-%m-%d %H:%M:%S} UTC."
    )


def open_run_message(run: SyncRun) -> str:
    """Why an open run blocks a new upload, naming it and what to do."""
    what = "Revert run" if run.is_revert else "Run"
    started = f"started {run.created_at:%Y-%m-%d %H:%M:%S} UTC by {run.uploaded_by_name}"
    if run.is_waiting:
        todo = "approve or reject it first"
    elif run.status == RunStatus.APPROVED.value:
        todo = "it was approved and is being applied; wait until it finishes"
    else:
        todo = (
            "wait until it is processed (it then applies or waits for approval), then approve "
            "or reject it if it waits"
        )
    return (
        f"{what} {run.id} ({run.status_label}, {started}) is still open; one run at a time per "
        f"organization: {todo}. Nothing was started."
    )


def _refuse_while_open(session: Session, org: str) -> None:
    blocking = _open_run(session, org)
    if blocking is not None:
        session.rollback()
        raise RunInProgress(open_run_message(blocking), blocking.id, blocking.status_label)


def _lock_intake(session: Session, org: str) -> None:
    """Serialise the organization's run starts: the UPDATE takes the settings row (PostgreSQL)
    or the write lock (SQLite) until commit, so a concurrent start waits here and then sees the
    run this one creates."""
    session.execute(
        update(IntegrationSettings)
        .where(IntegrationSettings.org == org)
        .values(intake_counter=IntegrationSettings.intake_counter + 1)
    )


# -- intake ---------------------------------------------------------------------------------


def check_uploads(users: Upload | None, employees: Upload | None) -> tuple[Upload, Upload]:
    """Refuse a missing, empty or oversized file before anything starts."""
    missing = [
        name
        for name, upload in ((USERS_FILE, users), (EMPLOYEES_FILE, employees))
        if upload is None or not upload.data
    ]
    if missing:
        raise MissingFile(
            f"Both files are required together; missing or empty: {', '.join(missing)}. "
            "Nothing was started."
        )
    limit = get_state().config["MAX_UPLOAD_BYTES"]
    for name, upload in ((USERS_FILE, users), (EMPLOYEES_FILE, employees)):
        assert upload is not None
        if len(upload.data) > limit:
            raise FileTooLarge(
                f"{name} ({upload.filename}) is {len(upload.data):,} bytes; the limit is "
                f"{limit:,} bytes. Nothing was started."
            )
    assert users is not None and employees is not None
    return users, employees


def start_run(
    org: str,
    users: Upload | None,
    employees: Upload | None,
    actor: Actor,
    channel: Channel = Channel.DASHBOARD,
    *,
    token_id: int | None = None,
    enqueue: bool = True,
) -> SyncRun:
    """Accept an upload: check it, store both files encrypted, create the run, start its job.

    Raises :class:`MissingFile`, :class:`FileTooLarge`, :class:`IntegrationDisabled`,
    :class:`RunInProgress` (another run is open) or :class:`WindowClosed` (nothing is stored
    then). Simultaneous starts of one organization serialise on the settings row, so only one
    passes the open-run and window checks.
    """
    state = get_state()
    session = state.session
    users, employees = check_uploads(users, employees)
    settings = get_settings(org)
    if not settings.enabled:
        raise IntegrationDisabled(
            "The CSV import integration is disabled for this organization; an admin can enable "
            "it in Settings > Integrations > CSV Import."
        )
    reap_stuck_runs(org)  # a run whose worker died must not hold the window or the open run
    _lock_intake(session, org)
    now = utcnow()
    _refuse_while_open(session, org)
    opens_at = _window_opens_at(session, org, now)
    if opens_at is not None:
        session.rollback()
        raise WindowClosed(window_message(opens_at), opens_at)
    run = SyncRun(
        id=uuid.uuid4().hex,
        org=org,
        status=RunStatus.PROCESSING.value,
        phase=Phase.QUEUED.value,
        channel=Channel(channel).value,
        uploaded_by_id=actor.id,
        uploaded_by_name=actor.name,
        token_id=token_id,
        created_at=now,
        heartbeat_at=now,
        users_filename=users.filename or USERS_FILE,
        employees_filename=employees.filename or EMPLOYEES_FILE,
        users_size=len(users.data),
        employees_size=len(employees.data),
        timings={},
    )
    session.add(run)
    state.store.put(session, run, "users", run.users_filename, users.data)
    state.store.put(session, run, "employees", run.employees_filename, employees.data)
    run.job_id = f"csvdirectory-process-{run.id}"
    session.commit()
    signals.run_created.send(_app(), run=run)
    if enqueue:
        from .jobs import process_run

        state.runner.enqueue(process_run, run.id, run.job_id)
    return run


def dry_run(
    org: str, users: Upload | None, employees: Upload | None, actor: Actor | None = None
) -> PlanOutcome:
    """Validate and plan without creating a run or touching the window.

    The outcome's ``guard_reasons`` say what would hold or refuse the run if ``actor``
    uploaded these files. Raises :class:`FileValidationError` (with every row error) on bad
    files.
    """
    state = get_state()
    users, employees = check_uploads(users, employees)
    snapshot = state.adapter.snapshot(org)
    outcome = build_plan(
        users.data,
        employees.data,
        snapshot,
        extra_columns=state.adapter.extra_columns,
        max_errors=state.config["MAX_ROW_ERRORS"],
        limits=state.adapter.field_limits(),
    )
    outcome.guard_reasons = guards.evaluate(
        guard_context(
            org,
            outcome.changeset,
            snapshot,
            uploader_id=actor.id if actor is not None else None,
            employees_rows=outcome.employees_rows,
        )
    )
    return outcome


def guard_context(
    org: str,
    changeset: ChangeSet,
    snapshot: DirectorySnapshot,
    *,
    uploader_id: str | None = None,
    employees_rows: int | None = None,
) -> guards.GuardContext:
    """What the guards look at for a plan of ``org`` started by ``uploader_id`` (an
    :class:`Actor` id: the host's person key, ``token:<id>`` for an API token, ``None``)."""
    settings = get_settings(org)
    uploader_key = None
    if uploader_id is not None and not uploader_id.startswith("token:"):
        uploader_key = uploader_id
    return guards.GuardContext(
        changeset,
        snapshot,
        guards.GuardSettings(settings.guard_removal_percent, settings.guard_removal_people),
        uploader_key=uploader_key,
        employees_rows=employees_rows,
    )


def needs_approval(
    changeset: ChangeSet,
    reasons: list[guards.GuardReason],
    settings: IntegrationSettings,
    directory_size: int,
) -> bool:
    """Whether a plan waits for approval: a guard holds it, or its structural changes exceed
    the organization's threshold."""
    return bool(reasons) or exceeds_threshold(
        changeset.structural_count,
        threshold=settings.approval_threshold,
        percent=settings.approval_percent,
        directory_size=directory_size,
    )


# -- the jobs' bodies -------------------------------------------------------------------------


def process(
    run_id: str, worker: str | None = None, progress: ProgressCallback | None = None
) -> None:
    """Read, validate and plan a run; apply it at once or leave it waiting for approval.

    Idempotent: a run that is no longer in File Processing is left alone. Raises
    :class:`~.failures.TransientFault` when the database was lost before the apply started (the
    run stays in File Processing: the job retries); ends the run in Error while processing on
    any other failure.
    """
    state = get_state()
    session = state.session
    step = Phase.READING.value
    try:
        run = session.get(SyncRun, run_id)
        if run is None or run.status != RunStatus.PROCESSING.value or run.is_finished:
            return
        # a previous attempt that reached the apply did not commit it (the run row is written
        # in the apply's transaction); whatever it did, this attempt re-plans and compares
        resumed_apply = run.phase == Phase.APPLYING.value
        started = time.perf_counter()
        run.started_at = utcnow()
        run.worker = worker
        _enter_phase(run, Phase.READING)
        checkpoint("reading", session)
        pair = None if run.is_revert else _read_stored_pair(run)
        if pair is not None:
            run.users_rows = pair.users.row_count
            run.employees_rows = pair.employees.row_count
        read_seconds = time.perf_counter() - started
        step = Phase.PLANNING.value
        _enter_phase(run, Phase.PLANNING)
        checkpoint("planning", session)
        snapshot = state.adapter.snapshot(run.org)
        changeset = plan_pair(pair, snapshot) if pair is not None else _plan_revert(run, snapshot)
        settings = get_settings(run.org)
    except FileValidationError as exc:
        _fail(run, _validation_reason(exc), errors=exc.errors, error_count=exc.error_count)  # type: ignore[arg-type]
        return
    except RevertUnavailable as exc:
        _fail(run, f"The revert cannot be planned: {exc}")  # type: ignore[arg-type]
        return
    except Exception as exc:
        _stop(run_id, step, exc)
        raise
    previous_fingerprint = run.fingerprint
    try:  # recording the plan writes many rows: a fault there ends the run too
        run.threshold = settings.approval_threshold
        run.threshold_percent = settings.approval_percent
        _record_plan(run, changeset, snapshot)
        run.timings = {
            "read_seconds": round(read_seconds, 3),
            "plan_seconds": round(time.perf_counter() - started - read_seconds, 3),
        }
        refused = _guard(run, changeset, snapshot)
    except Exception as exc:
        _stop(run_id, Phase.PLANNING.value, exc)
        raise
    if refused:
        return
    if resumed_apply and changeset.fingerprint() != previous_fingerprint:
        run.notice = (
            "The directory changed while this run was being applied, so it was not applied "
            "blindly. This is the new plan: review it and approve it."
        )
        _wait_for_approval(run, changeset)
        return
    if run.guard_reasons or exceeds_threshold(
        changeset.structural_count,
        threshold=run.threshold,
        percent=run.threshold_percent,
        directory_size=snapshot.size,
    ):
        _wait_for_approval(run, changeset)
    else:
        _apply(run, changeset, RunStatus.AUTO_APPROVED, progress)


def apply_approved(
    run_id: str, worker: str | None = None, progress: ProgressCallback | None = None
) -> None:
    """Apply an approved run. It re-plans first: when the directory changed since the plan was
    approved, the new plan goes back to Waiting for Approval instead of applying stale changes.

    Raises :class:`~.failures.TransientFault` when the database was lost before the apply
    started (the job retries); ends the run in Error while processing on any other failure.
    """
    state = get_state()
    session = state.session
    try:
        run = session.get(SyncRun, run_id)
        if run is None or run.status != RunStatus.APPROVED.value or run.is_finished:
            return
        run.worker = worker
        _enter_phase(run, Phase.PLANNING)
        checkpoint("planning", session)
        snapshot = state.adapter.snapshot(run.org)
        if run.is_revert:
            changeset = _plan_revert(run, snapshot)
        else:
            changeset = plan_pair(_read_stored_pair(run), snapshot)
    except FileValidationError as exc:
        _fail(
            run,  # type: ignore[arg-type]
            "The directory changed since approval and the files no longer fit it: "
            + _validation_reason(exc),
            errors=exc.errors,
            error_count=exc.error_count,
        )
        return
    except RevertUnavailable as exc:
        _fail(run, f"The revert cannot be planned: {exc}")  # type: ignore[arg-type]
        return
    except Exception as exc:
        _stop(run_id, "re-planning", exc)
        raise
    if changeset.fingerprint() != run.fingerprint:
        try:
            _record_plan(run, changeset, snapshot)
        except Exception as exc:
            _stop(run_id, "re-planning", exc)
            raise
        run.replans += 1
        run.decided_by_id = run.decided_by_name = None
        run.decided_at = None
        run.notice = (
            "The directory changed after this plan was made, so the approved plan was not "
            "applied. This is the new plan: review it and approve again."
        )
        if _guard(run, changeset, snapshot):
            return
        _wait_for_approval(run, changeset)
        return
    _apply(run, changeset, RunStatus.APPROVED, progress)


# -- decisions --------------------------------------------------------------------------------


def approve(org: str, run_id: str, actor: Actor, *, enqueue: bool = True) -> SyncRun:
    """Approve a waiting run: record who, then start the apply job (unless ``enqueue`` is
    false: the caller then runs :func:`apply_approved` itself)."""
    state = get_state()
    run = _lock_waiting(org, run_id, "approve")
    run.status = RunStatus.APPROVED.value
    run.decided_by_id, run.decided_by_name, run.decided_at = actor.id, actor.name, utcnow()
    run.phase = Phase.QUEUED.value
    run.heartbeat_at = utcnow()
    run.job_id = f"csvdirectory-apply-{run.id}-{run.replans}"
    state.session.commit()
    if enqueue:
        from .jobs import apply_run

        state.runner.enqueue(apply_run, run.id, run.job_id)
    return run


#: Longest kept rejection reason (characters).
MAX_REASON_LENGTH = 2000


def reject(org: str, run_id: str, actor: Actor, reason: str | None = None) -> SyncRun:
    """Reject a waiting run: nothing is applied; record who and, optionally, why.

    A rejected run does not count in the sync window, so a corrected file can be uploaded at
    once.
    """
    run = _lock_waiting(org, run_id, "reject")
    now = utcnow()
    run.status = RunStatus.REJECTED.value
    run.decided_by_id, run.decided_by_name, run.decided_at = actor.id, actor.name, now
    run.reject_reason = (reason or "").strip()[:MAX_REASON_LENGTH] or None
    run.phase = Phase.DONE.value
    run.finished_at = now
    get_state().session.commit()
    signals.run_rejected.send(_app(), run=run)
    return run


def _lock_waiting(org: str, run_id: str, action: str) -> SyncRun:
    session = get_state().session
    run = session.scalar(
        select(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.org == org)
        .with_for_update()
        # the locked row as it is now, not the session's copy (a worker may have moved it on)
        .execution_options(populate_existing=True)
    )
    if run is None:
        raise RunNotFound()
    if not run.is_waiting:
        session.rollback()
        raise RunStateError(
            f"Only a run Waiting for Approval can be {action}d; this one is {run.status_label}."
        )
    return run


# -- reverts ----------------------------------------------------------------------------------


def revert_unavailable_reason(run: SyncRun) -> str | None:
    """Why ``run`` cannot be reverted now, or ``None`` when it can (dashboard, API and CLI
    show this sentence)."""
    if run.is_open:
        return f"This run is still open ({run.status_label}); only an applied sync can be reverted."
    if not run.is_applied:
        return (
            f"Only an applied sync can be reverted; this run ended {run.status_label}, so it "
            "changed nothing."
        )
    if not run.change_count:
        return "This sync changed nothing, so there is nothing to revert."
    try:
        _applied_role(run)
    except RevertUnavailable as exc:
        return str(exc)
    if run.reverted_by_run_id is not None:
        revert_run = get_state().session.get(SyncRun, run.reverted_by_run_id)
        if revert_run is not None and revert_run.is_open:
            return (
                f"Revert run {revert_run.id} of this sync is in progress "
                f"({revert_run.status_label})."
            )
        if revert_run is not None and revert_run.is_applied:
            return (
                f"This sync was already reverted by run {revert_run.id}; revert that run to "
                "redo this sync's changes."
            )
    return None


def start_revert(org: str, run_id: str, actor: Actor, *, enqueue: bool = True) -> SyncRun:
    """Start a revert of the applied run ``run_id``: a new run (channel ``revert``) whose plan is
    the inverse of what that run changed, against the directory as it is when it is planned.

    It goes through the same threshold, approval and atomic apply as an upload, is exempt from
    the sync window, and is refused while another run is open. The two runs are linked both
    ways (``reverts_run_id``, ``reverted_by_run_id``). Raises :class:`RevertUnavailable` (the
    message says why), :class:`RunInProgress`, :class:`IntegrationDisabled` or
    :class:`RunNotFound`.
    """
    state = get_state()
    session = state.session
    if not get_settings(org).enabled:
        raise IntegrationDisabled(
            "The CSV import integration is disabled for this organization; an admin can enable "
            "it in Settings > Integrations > CSV Import."
        )
    reap_stuck_runs(org)
    _lock_intake(session, org)
    original = session.scalar(select(SyncRun).where(SyncRun.id == run_id, SyncRun.org == org))
    if original is None:
        session.rollback()
        raise RunNotFound()
    _refuse_while_open(session, org)
    reason = revert_unavailable_reason(original)
    if reason is not None:
        session.rollback()
        raise RevertUnavailable(reason)
    now = utcnow()
    run = SyncRun(
        id=uuid.uuid4().hex,
        org=org,
        status=RunStatus.PROCESSING.value,
        phase=Phase.QUEUED.value,
        channel=Channel.REVERT.value,
        uploaded_by_id=actor.id,
        uploaded_by_name=actor.name,
        created_at=now,
        heartbeat_at=now,
        users_filename="",
        employees_filename="",
        users_size=0,
        employees_size=0,
        timings={},
        reverts_run_id=original.id,
    )
    run.job_id = f"csvdirectory-process-{run.id}"
    original.reverted_by_run_id = run.id
    session.add(run)
    session.commit()
    signals.run_created.send(_app(), run=run)
    if enqueue:
        from .jobs import process_run

        state.runner.enqueue(process_run, run.id, run.job_id)
    return run


def load_conflicts(run: SyncRun) -> list[Conflict]:
    """A revert run's conflicts: changes of the original made since and left alone."""
    state = get_state()
    token = state.session.scalar(  # this file only: not every page of the run's change set
        select(StoredFile.ciphertext).where(
            StoredFile.run_id == run.id, StoredFile.role == "conflicts"
        )
    )
    if token is None:
        return []
    return conflicts_from_bytes(state.store.decrypt(token))


def _applied_role(run: SyncRun) -> str:
    """The role of the record of what ``run`` applied, or :class:`RevertUnavailable`. A run
    applied before records were kept (schema revision 0003) falls back to its stored plan,
    which is what it applied. Only the files' metadata is read (nothing decrypted)."""
    found = {
        role: (purged_at, stored)
        for role, purged_at, stored in get_state().session.execute(
            select(
                StoredFile.role, StoredFile.purged_at, StoredFile.ciphertext.is_not(None)
            ).where(StoredFile.run_id == run.id, StoredFile.role.in_(("applied", "changeset")))
        )
    }
    role = "applied" if "applied" in found else "changeset"
    if role not in found:
        raise RevertUnavailable(
            "The record of what this sync changed is missing, so it cannot be reverted."
        )
    purged_at, stored = found[role]
    if not stored:
        retention: timedelta = get_state().config["FILE_RETENTION"]
        when = f" on {purged_at:%Y-%m-%d}" if purged_at else ""
        raise RevertUnavailable(
            f"The record of what this sync changed (its before-values) was purged{when} "
            f"under the retention period ({_describe(retention)}), so it can no longer be "
            "reverted."
        )
    return role


def _applied_changes(run: SyncRun) -> changestore.StoredChanges:
    """What ``run`` applied (see :func:`_applied_role`), as stored: a revert streams it kind by
    kind (:meth:`~.changestore.StoredChanges.iter_kind`), never whole."""
    state = get_state()
    stored = changestore.open_changes(state.store, state.session, run, _applied_role(run))
    if stored is None:  # deleted meanwhile
        raise RevertUnavailable(
            "The record of what this sync changed is missing, so it cannot be reverted."
        )
    return stored


def _plan_revert(run: SyncRun, snapshot: DirectorySnapshot) -> ChangeSet:
    """Plan a revert run: the inverse of its original's applied changes against ``snapshot``;
    the conflicts are stored with the run (encrypted)."""
    state = get_state()
    original = state.session.get(SyncRun, run.reverts_run_id)
    if original is None:
        raise RevertUnavailable("The run to revert no longer exists.")
    plan = plan_revert(_applied_changes(original), snapshot)
    state.store.put(
        state.session, run, "conflicts", "conflicts.json.z", conflicts_to_bytes(plan.conflicts)
    )
    run.conflict_count = len(plan.conflicts)
    return plan.changeset


# -- reading runs -----------------------------------------------------------------------------


def get_run(org: str, run_id: str) -> SyncRun:
    """The run ``run_id`` of ``org``; :class:`RunNotFound` for any other organization's."""
    run = get_state().session.scalar(
        select(SyncRun).where(SyncRun.id == run_id, SyncRun.org == org)
    )
    if run is None:
        raise RunNotFound()
    return run


def list_runs(
    org: str, *, status: RunStatus | None = None, page: int = 1, per_page: int = 25
) -> tuple[list[SyncRun], int]:
    """One page of the organization's runs, newest first, and the total count."""
    session = get_state().session
    query = select(SyncRun).where(SyncRun.org == org)
    if status is not None:
        query = query.where(SyncRun.status == RunStatus(status).value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    runs = session.scalars(
        query.order_by(SyncRun.created_at.desc(), SyncRun.id.desc())
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    ).all()
    return list(runs), total


def stored_changes(run: SyncRun) -> changestore.StoredChanges | None:
    """The run's planned change set as stored, to read one page, the counts or the summary
    without reading it whole (``None`` before planning)."""
    state = get_state()
    return changestore.open_changes(state.store, state.session, run)


def load_changeset(run: SyncRun) -> ChangeSet:
    """The run's planned change set, whole (empty before planning)."""
    stored = stored_changes(run)
    return ChangeSet() if stored is None else stored.changeset()


def load_people(run: SyncRun) -> review.People:
    """Who the run's changes touch: name, team and role before and after (empty before
    planning, and for runs planned before this index was stored)."""
    stored = stored_changes(run)
    return review.People() if stored is None else stored.people()


def load_review(run: SyncRun) -> tuple[ChangeSet, review.People]:
    """The whole change set and who it touches, from one read (the downloads)."""
    stored = stored_changes(run)
    if stored is None:
        return ChangeSet(), review.People()
    if isinstance(stored, changestore.PagedChanges):
        return stored.changeset_and_people()
    return stored.changeset(), stored.people()


def row_errors(run: SyncRun) -> list[RowError]:
    """The run's row errors (file, line, column, value, message)."""
    return [RowError.from_dict(error) for error in run.row_errors or []]


def progress(run: SyncRun) -> tuple[int, int]:
    """(done, total) of the current phase: live from the job while it applies."""
    live = get_state().runner.progress(run)
    return live if live is not None else (run.progress_done, run.progress_total)


# -- failure and stuck runs -------------------------------------------------------------------


def mark_failed_if_unfinished(
    run_id: str,
    reason: str | Callable[[SyncRun], str | None],
    *,
    wait: bool = True,
) -> bool:
    """End an unfinished run in Error while processing (job callbacks, liveness).

    ``reason`` is the text, or a function of the locked run giving it (``None``: leave the run
    alone). The run's row is locked first: ``wait=False`` skips a run whose row a live job holds
    (liveness never waits for one); ``wait=True`` waits up to ten seconds for it. Returns whether
    the run was ended here.
    """
    session = get_state().session
    session.rollback()
    try:
        if wait and session.connection().dialect.name == "postgresql":
            session.execute(text("SET LOCAL lock_timeout = '10s'"))
        run = session.scalars(
            select(SyncRun)
            .where(SyncRun.id == run_id)
            .with_for_update(skip_locked=not wait)
            .execution_options(populate_existing=True)
        ).first()
        if run is None or run.is_finished or run.status not in liveness.UNFINISHED:
            session.rollback()
            return False
        text_reason = reason(run) if callable(reason) else reason
        if text_reason is None:
            session.rollback()
            return False
        if not _finish_if_applied(run):
            _fail(run, text_reason)
        return True
    except sa_exc.OperationalError as exc:
        session.rollback()
        if failures.is_transient(exc) and "lock" not in str(exc.orig).lower():
            raise
        return False  # locked by a live job (or SQLite's write lock): it is not dead


def note_retry(run_id: str, wait: int) -> None:
    """Show on a run that its job will retry after a transient fault (it stays unfinished)."""
    session = get_state().session
    session.rollback()
    session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.finished_at.is_(None))
        .values(phase=Phase.QUEUED.value, heartbeat_at=utcnow())
    )
    session.commit()


def _finish_if_applied(run: SyncRun) -> bool:
    """A run whose job stopped after the adapter committed its changes (with the applied record
    and ``applied_at``, staged in the same transaction) was applied: end it so, not as an
    error. Returns whether it was."""
    if run.applied_at is None:
        return False
    now = utcnow()
    run.status = RunStatus.APPROVED.value if run.decided_by_name else RunStatus.AUTO_APPROVED.value
    run.phase = Phase.DONE.value
    run.notice = "The job stopped right after the changes were applied; they were applied in full."
    run.finished_at = run.heartbeat_at = now
    from .history import record_run

    record_run(run, dict(run.change_counts or {}))
    get_state().session.commit()
    return True


def reap_stuck_runs(org: str | None = None) -> int:
    """End runs whose job died as Error while processing (see :mod:`.liveness`); returns how
    many were ended."""
    return liveness.end_dead_runs(org)


# -- internals --------------------------------------------------------------------------------


def _read_stored_pair(run: SyncRun) -> ParsedPair:
    """Decrypt and read the run's two stored files."""
    state = get_state()
    return read_pair(
        state.store.get(run, "users"),
        state.store.get(run, "employees"),
        extra_columns=state.adapter.extra_columns,
        max_errors=state.config["MAX_ROW_ERRORS"],
        limits=state.adapter.field_limits(),
    )


def _enter_phase(run: SyncRun, phase: Phase) -> None:
    run.phase = phase.value
    run.heartbeat_at = utcnow()
    get_state().session.commit()


def _record_plan(run: SyncRun, changeset: ChangeSet, snapshot: DirectorySnapshot) -> None:
    """Store the plan for paging (index, pages and search text, see :mod:`.changestore`) with
    its counts and fingerprint on the run."""
    state = get_state()
    directory_size = snapshot.size
    people = review.describe_people(changeset, snapshot)
    fingerprint = changestore.record(state.store, state.session, run, changeset, people)
    run.change_count = changeset.count
    run.structural_change_count = changeset.structural_count
    run.change_counts = changeset.counts()
    run.fingerprint = fingerprint
    run.directory_size = directory_size
    run.planned_at = utcnow()


def _guard(run: SyncRun, changeset: ChangeSet, snapshot: DirectorySnapshot) -> bool:
    """Run the guards on a fresh plan and store their reasons on the run. A refusal ends the
    run in Error while processing with the guard's message (True: the caller stops)."""
    reasons = guards.evaluate(
        guard_context(
            run.org,
            changeset,
            snapshot,
            uploader_id=run.uploaded_by_id,
            employees_rows=run.employees_rows,
        )
    )
    run.guard_reasons = [reason.to_dict() for reason in reasons]
    refusal = next((r for r in reasons if r.verdict is guards.Verdict.REFUSE), None)
    if refusal is None:
        return False
    _fail(run, refusal.message)
    return True


def guard_reasons(run: SyncRun) -> list[guards.GuardReason]:
    """Why the run waits for approval (or was refused), guard by guard."""
    return [guards.GuardReason.from_dict(reason) for reason in run.guard_reasons or []]


def _record_applied(run: SyncRun, changeset: ChangeSet) -> None:
    """Keep what the run applied, each change with the values it found (``before``) and wrote
    (``after``), encrypted like the change set: what :func:`start_revert` inverts.

    The applied change set is the stored plan (a re-plan that differs goes back to waiting),
    so the record is a copy of the plan's ciphertext: nothing is serialised again."""
    state = get_state()
    if not state.store.copy(state.session, run, "changeset", "applied", "applied.json.z"):
        state.store.put(state.session, run, "applied", "applied.json.z", changeset.to_bytes())


def _wait_for_approval(run: SyncRun, changeset: ChangeSet) -> None:
    run.status = RunStatus.WAITING.value
    run.phase = Phase.DONE.value
    run.heartbeat_at = utcnow()
    get_state().session.commit()
    signals.run_waiting_for_approval.send(
        _app(), run=run, changeset=changeset
    )


def _apply(
    run: SyncRun,
    changeset: ChangeSet,
    final_status: RunStatus,
    progress: ProgressCallback | None = None,
) -> None:
    """Apply the change set and record the run's outcome in the same transaction.

    The run's row is locked and its final status written first, then the adapter applies the
    changes and commits (the reference adapter uses the host's session, so both land in one
    commit, or neither does). So "applied" and "the run says applied" are one fact under any
    kill, and a live apply's locked row tells liveness it is alive.
    """
    state = get_state()
    session = state.session
    run.progress_done, run.progress_total = 0, changeset.count
    run_id, org = run.id, run.org
    try:
        _enter_phase(run, Phase.APPLYING)
    except Exception as exc:  # nothing applied yet: a transient fault may be retried
        _stop(run_id, Phase.PLANNING.value, exc)
        raise
    started = time.perf_counter()

    def report(done: int, total: int) -> None:
        state.runner.report(run_id, done, total)
        if progress is not None:
            progress(done, total)

    try:
        # one writer per organization: a SCIM write waits for this apply (or gets a 409)
        with organization_lock(state.db.engine, org, float(state.config["JOB_TIMEOUT"])):
            guard_apply_transaction(session)
            run = session.scalars(
                select(SyncRun)
                .where(SyncRun.id == run_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one()
            if run.is_finished:  # ended meanwhile (liveness, a callback): apply nothing
                session.rollback()
                return
            now = utcnow()
            # what a revert inverts and the history entry, staged in the apply's transaction:
            # an adapter working in the extension's session (the SQLAlchemy one) commits them
            # with the directory's changes
            _record_applied(run, changeset)
            run.applied_at = now
            run.status = final_status.value
            run.phase = Phase.DONE.value
            run.progress_done = changeset.count
            run.finished_at = now
            run.heartbeat_at = now
            from .history import record_run

            record_run(run, changeset.counts())
            session.flush()
            checkpoint("apply:start", session)
            state.adapter.apply(org, changeset, progress=report)
            session.commit()  # for an adapter that does not commit the host's session
    except Exception as exc:
        _stop(run_id, Phase.APPLYING.value, exc, transient_ok=False)
        raise
    finally:
        state.runner.report(run_id, None, None)
    session.expire_all()
    run = session.get(SyncRun, run_id)  # type: ignore[assignment]
    run.timings = {**(run.timings or {}), "apply_seconds": round(time.perf_counter() - started, 3)}
    try:
        session.commit()
    except Exception:  # the changes and the outcome are committed; only the timing is lost
        session.rollback()
    app = _app()
    signals.run_applied.send(app, run=run, changeset=changeset)
    grants = [
        signals.AccessGrant(
            email=change.subject,
            name=str((change.after or {}).get("name") or ""),
            role=str((change.after or {}).get("role") or ""),
            teams=list((change.after or {}).get("teams") or []),
        )
        for change in changeset.of_kind(ChangeKind.ACCESS_GRANTED)
    ]
    if grants:
        signals.dashboard_access_granted.send(app, run=run, grants=grants)


def _stop(run_id: str, step: str, exc: BaseException, *, transient_ok: bool = True) -> None:
    """A job step failed with ``exc``: roll back, then either hand a transient fault before the
    apply to the job for a retry (raising :class:`~.failures.TransientFault`), or end the run in
    Error while processing with a plain reason (the detail goes to the log)."""
    session = get_state().session
    try:
        session.rollback()
    except Exception:
        session.close()
    if transient_ok and failures.is_transient(exc):
        raise failures.TransientFault(step, exc) from exc
    reason = failures.reason_for(exc, step, run_id=run_id)
    try:
        mark_failed_if_unfinished(run_id, reason)
    except Exception:  # the job's failure callback (or liveness) records it
        get_state().session.rollback()


def _fail(
    run: SyncRun,
    reason: str,
    *,
    errors: list[RowError] | None = None,
    error_count: int | None = None,
) -> None:
    session = get_state().session
    now = utcnow()
    run.status = RunStatus.ERROR.value
    run.phase = Phase.DONE.value
    run.error_reason = reason
    if errors is not None:
        run.row_errors = [error.to_dict() for error in errors[:STORED_ERRORS]]
        run.error_count = error_count if error_count is not None else len(errors)
    run.finished_at = now
    run.heartbeat_at = now
    session.commit()
    signals.run_failed.send(_app(), run=run, reason=reason)


def _validation_reason(exc: FileValidationError) -> str:
    files = sorted({error.file for error in exc.errors})
    count = exc.error_count
    noun = "error" if count == 1 else "errors"
    return (
        f"{' and '.join(files) or 'The files'} had {count} {noun}; nothing was applied. "
        f"First: {exc.errors[0] if exc.errors else 'unknown'}"
    )


def _describe(interval: timedelta) -> str:
    seconds = interval.total_seconds()
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} days"
    hours = seconds / 3600
    return f"{hours:g} hours" if hours >= 1 else f"{seconds:g} seconds"
