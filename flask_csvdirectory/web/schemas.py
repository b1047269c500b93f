"""Marshmallow schemas of the JSON API: query strings it reads and bodies it returns.

They are the single description of the API's shapes: the views parse query strings and dump
responses through them, and :mod:`.openapi` turns the same classes into the OpenAPI document.
Every error, whatever its status, has the shape of :class:`ErrorSchema`.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, INCLUDE, Schema, fields, validate

from ..changes import ChangeKind
from ..models import Channel, Phase, RunStatus

#: The API's status codes of a run (``RunStatus`` member names, lower case).
STATUS_CODES: dict[str, RunStatus] = {status.name.lower(): status for status in RunStatus}
#: Largest ``per_page`` of the paginated endpoints.
MAX_PER_PAGE = 100
#: Largest ``limit`` of a dry run's change preview.
MAX_PREVIEW = 1000


def status_code(status: RunStatus | str) -> str:
    """The API's code of a run status: ``"waiting"``, ``"auto_approved"``, ..."""
    return RunStatus(status).name.lower()


# -- errors ------------------------------------------------------------------------------


class ErrorBodySchema(Schema):
    """What went wrong: the HTTP status, a stable code for scripts and a sentence for people."""

    status = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    code = fields.String(
        required=True,
        metadata={
            "description": "A stable, machine-readable reason: missing_file, file_too_large, "
            "request_too_large, window_closed, run_in_progress, integration_disabled, "
            "invalid_files, not_found, invalid_state, revert_unavailable, unauthorized, "
            "validation_error, idempotency_key_reused, "
            "idempotency_key_in_use, invalid_idempotency_key, method_not_allowed, "
            "internal_error, ...",
            "example": "window_closed",
        },
    )
    message = fields.String(required=True, metadata={"description": "A readable explanation."})
    details = fields.Raw(
        allow_none=True,
        metadata={
            "description": "Extra data for some codes: window_closed gives opens_at and "
            "retry_after; run_in_progress gives run_id, status_label and run (its URL); "
            "invalid_files gives error_count and errors (file, line, column, "
            "value, message); validation_error gives the invalid parameters."
        },
    )


class ErrorSchema(Schema):
    """The one shape of every JSON error of the API."""

    error = fields.Nested(ErrorBodySchema, required=True)


# -- runs --------------------------------------------------------------------------------


class ActorSchema(Schema):
    """Who did something: the host's user id (``token:<id>`` for an API token) and a name."""

    id = fields.String(allow_none=True, required=True)
    name = fields.String(required=True)


class FileInfoSchema(Schema):
    """One uploaded file of a run."""

    name = fields.String(required=True)
    size = fields.Integer(required=True, metadata={"description": "Bytes."})
    rows = fields.Integer(
        allow_none=True, required=True, metadata={"description": "Data rows, once read."}
    )


class RunFilesSchema(Schema):
    """Both files of a run."""

    users = fields.Nested(FileInfoSchema, required=True)
    employees = fields.Nested(FileInfoSchema, required=True)


class ProgressSchema(Schema):
    """What the run's job is doing and how far it got."""

    phase = fields.String(required=True, validate=validate.OneOf([p.value for p in Phase]))
    done = fields.Integer(required=True)
    total = fields.Integer(required=True)


class TimingsSchema(Schema):
    """When things happened to a run, and how long the steps took."""

    created_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True, required=True)
    planned_at = fields.DateTime(allow_none=True, required=True)
    decided_at = fields.DateTime(allow_none=True, required=True)
    applied_at = fields.DateTime(
        allow_none=True,
        required=True,
        metadata={"description": "When the changes were applied (the sync window counts from "
                  "here); null when nothing was applied."},
    )
    finished_at = fields.DateTime(allow_none=True, required=True)
    seconds = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        required=True,
        metadata={"description": "read_seconds, plan_seconds, apply_seconds when known."},
    )


class RunLinksSchema(Schema):
    """Where to go next from a run."""

    self = fields.String(required=True)
    changes = fields.String(required=True)
    errors = fields.String(required=True)
    approve = fields.String(required=True)
    reject = fields.String(required=True)
    revert = fields.String(required=True)
    conflicts = fields.String(required=True)


class RevertInfoSchema(Schema):
    """Whether the run can be reverted now, and why not."""

    available = fields.Boolean(required=True)
    reason = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Why it cannot be reverted (not applied, already reverted, "
                  "its before-values purged by retention, ...); null when it can."},
    )


class GuardReasonSchema(Schema):
    """Why a run waits for approval (``hold``) or was refused (``refuse``), by one guard."""

    guard = fields.String(
        required=True,
        metadata={
            "description": "uploader_loses_admin, admin_continuity, admin_loses_access or "
            "mass_removal.",
            "example": "mass_removal",
        },
    )
    verdict = fields.String(required=True, validate=validate.OneOf(["hold", "refuse"]))
    message = fields.String(required=True, metadata={"description": "Names who is affected."})
    people = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Emails of the people affected (at most 100)."},
    )
    people_count = fields.Integer(required=True, metadata={"description": "All of them."})


class RunSchema(Schema):
    """One import run (an upload of both files and its sync)."""

    id = fields.String(required=True)
    status = fields.String(
        required=True,
        validate=validate.OneOf(list(STATUS_CODES)),
        metadata={"description": "Machine-readable status."},
    )
    status_label = fields.String(
        required=True,
        metadata={
            "description": "The status as the product shows it: File Processing, Waiting for "
            "Approval, Approved by NAME, Rejected by NAME, Auto-Approved, Error while "
            "processing.",
            "example": "Approved by Ada Admin",
        },
    )
    channel = fields.String(required=True, validate=validate.OneOf([c.value for c in Channel]))
    uploaded_by = fields.Nested(ActorSchema, required=True)
    decided_by = fields.Nested(ActorSchema, allow_none=True, required=True)
    files = fields.Nested(RunFilesSchema, required=True)
    change_count = fields.Integer(allow_none=True, required=True)
    change_counts = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        allow_none=True,
        required=True,
        metadata={"description": "Changes by kind (every kind, zeros included) once planned."},
    )
    structural_change_count = fields.Integer(
        allow_none=True,
        required=True,
        metadata={
            "description": "The changes compared with the approval threshold: employees "
            "created, deactivated, reactivated or moved, teams created, dashboard access "
            "granted, changed or revoked, email changes. Name, title, employee ID and extra "
            "column edits do not count."
        },
    )
    guard_reasons = fields.List(
        fields.Nested(GuardReasonSchema),
        required=True,
        metadata={"description": "Why the run waits for approval or was refused (empty: no "
                  "guard spoke)."},
    )
    approval_threshold = fields.Integer(allow_none=True, required=True)
    approval_percent = fields.Float(allow_none=True, required=True)
    directory_size = fields.Integer(allow_none=True, required=True)
    replans = fields.Integer(required=True)
    notice = fields.String(allow_none=True, required=True)
    error_reason = fields.String(allow_none=True, required=True)
    error_count = fields.Integer(required=True)
    reject_reason = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Why the run was rejected, when the admin said."},
    )
    reverts = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "A revert run (channel revert): the id of the run it undoes."},
    )
    reverted_by = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "The id of the latest revert run started for this run."},
    )
    conflict_count = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "A revert run: changes of the original made since and left "
                  "alone (see links.conflicts)."},
    )
    revert = fields.Nested(RevertInfoSchema, required=True)
    progress = fields.Nested(ProgressSchema, required=True)
    timings = fields.Nested(TimingsSchema, required=True)
    links = fields.Nested(RunLinksSchema, required=True)


class PageLinksSchema(Schema):
    """Links of a paginated listing (``null`` when there is no such page)."""

    self = fields.String(required=True)
    first = fields.String(required=True)
    last = fields.String(required=True)
    prev = fields.String(allow_none=True, required=True)
    next = fields.String(allow_none=True, required=True)


class RunPageSchema(Schema):
    """One page of runs, newest first."""

    items = fields.List(fields.Nested(RunSchema), required=True)
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    pages = fields.Integer(required=True)
    links = fields.Nested(PageLinksSchema, required=True)


# -- changes and errors ------------------------------------------------------------------


class ChangeSchema(Schema):
    """One planned change; ``before``/``after`` hold only the fields that change."""

    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in ChangeKind]))
    label = fields.String(required=True, metadata={"example": "Employees created"})
    subject = fields.String(required=True, metadata={"description": "An email or a team name."})
    key = fields.String(allow_none=True, required=True)
    before = fields.Dict(allow_none=True, required=True)
    after = fields.Dict(allow_none=True, required=True)


class ChangePageSchema(Schema):
    """One page of a run's change set, in apply order."""

    run_id = fields.String(required=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    items = fields.List(fields.Nested(ChangeSchema), required=True)
    total = fields.Integer(required=True, metadata={"description": "Matching the kind filter."})
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    pages = fields.Integer(required=True)
    links = fields.Nested(PageLinksSchema, required=True)


class RowErrorSchema(Schema):
    """A problem at one place of one file (``line`` 1 is the header)."""

    file = fields.String(required=True, metadata={"example": "Employees.csv"})
    line = fields.Integer(required=True)
    column = fields.String(allow_none=True, required=True)
    value = fields.String(allow_none=True, required=True)
    message = fields.String(required=True)


class RowErrorListSchema(Schema):
    """A run's row errors (up to the stored cap; ``error_count`` counts them all)."""

    run_id = fields.String(required=True)
    error_count = fields.Integer(required=True)
    error_reason = fields.String(allow_none=True, required=True)
    items = fields.List(fields.Nested(RowErrorSchema), required=True)


class ConflictSchema(Schema):
    """A change of the reverted run that was changed again since, so the revert left it alone."""

    kind = fields.String(
        required=True,
        validate=validate.OneOf([k.value for k in ChangeKind]),
        metadata={"description": "The kind of the original change."},
    )
    subject = fields.String(required=True, metadata={"description": "An email or a team name."})
    field = fields.String(required=True, metadata={"example": "title"})
    wrote = fields.Raw(allow_none=True, required=True, metadata={"description": "What the "
                       "reverted run wrote."})
    now = fields.Raw(allow_none=True, required=True, metadata={"description": "What the "
                     "directory held when the revert was planned."})
    message = fields.String(required=True)


class ConflictListSchema(Schema):
    """A revert run's conflicts."""

    run_id = fields.String(required=True)
    reverts = fields.String(allow_none=True, required=True)
    total = fields.Integer(required=True)
    items = fields.List(fields.Nested(ConflictSchema), required=True)


class IntakeStatusSchema(Schema):
    """Whether an upload may start now, and if not, why and until when."""

    integration_enabled = fields.Boolean(required=True)
    uploads_open = fields.Boolean(required=True)
    window_opens_at = fields.DateTime(
        allow_none=True,
        required=True,
        metadata={"description": "When the sync window reopens, to the second, rounded up; "
                  "null when it is open."},
    )
    open_run = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "The id of the open run that blocks uploads, if any."},
    )
    message = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "The sentence the dashboard shows; null when uploads are open."},
    )


class DryRunSchema(Schema):
    """What an import would do now, computed without starting it."""

    dry_run = fields.Boolean(required=True, metadata={"example": True})
    change_count = fields.Integer(required=True)
    change_counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    structural_change_count = fields.Integer(required=True)
    would_wait_for_approval = fields.Boolean(required=True)
    would_be_refused = fields.Boolean(
        required=True,
        metadata={"description": "A guard would refuse the run (it removes your own Admin "
                  "access): another admin must upload these files."},
    )
    guard_reasons = fields.List(fields.Nested(GuardReasonSchema), required=True)
    approval_threshold = fields.Integer(required=True)
    approval_percent = fields.Float(allow_none=True, required=True)
    users_rows = fields.Integer(required=True)
    employees_rows = fields.Integer(required=True)
    directory_size = fields.Integer(required=True)
    integration_enabled = fields.Boolean(required=True)
    window_opens_at = fields.DateTime(
        allow_none=True,
        required=True,
        metadata={"description": "When a real import may start (null: now)."},
    )
    changes = fields.List(
        fields.Nested(ChangeSchema),
        required=True,
        metadata={"description": "The first `limit` changes, in apply order."},
    )
    changes_truncated = fields.Boolean(required=True)
    seconds = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)


class HistoryActorSchema(Schema):
    """Who made a change: a person or an API token."""

    id = fields.String(allow_none=True, required=True)
    name = fields.String(required=True)


class HistoryEntrySchema(Schema):
    """One change to the directory: a CSV run applied, or one SCIM write."""

    id = fields.Integer(required=True)
    at = fields.String(required=True, metadata={"format": "date-time"})
    source = fields.String(required=True, validate=validate.OneOf(["csv", "scim"]))
    action = fields.String(required=True, metadata={"example": "updated"})
    actor = fields.Nested(HistoryActorSchema, required=True)
    run_id = fields.String(allow_none=True, required=True)
    resource_type = fields.String(allow_none=True, required=True)
    resource_id = fields.String(allow_none=True, required=True)
    summary = fields.String(required=True)
    details = fields.Dict(
        required=True,
        metadata={"description": "SCIM: `before` and `after` (the resource); CSV: `counts` by "
                  "kind (the run's changes hold before and after)."},
    )


class HistoryPageSchema(Schema):
    """One page of the directory's history, newest first."""

    items = fields.List(fields.Nested(HistoryEntrySchema), required=True)
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    pages = fields.Integer(required=True)
    links = fields.Nested(PageLinksSchema, required=True)


class SettingsSchema(Schema):
    """The organization's integration settings (read-only here: an admin edits them on the
    dashboard's settings page, so a token cannot loosen the guards protecting its own
    uploads)."""

    enabled = fields.Boolean(required=True)
    approval_threshold = fields.Integer(
        required=True,
        metadata={"description": "Structural changes above which a run waits for approval."},
    )
    approval_percent = fields.Float(allow_none=True, required=True)
    guard_removal_percent = fields.Float(
        allow_none=True,
        required=True,
        metadata={"description": "A run waits when its deactivations plus access revocations "
                  "exceed this share of the active directory (percent; null: off).",
                  "example": 10.0},
    )
    guard_removal_people = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "... or exceed this many people (null: off).", "example": 25},
    )
    scim_enabled = fields.Boolean(
        required=True, metadata={"description": "Whether SCIM provisioning is on (default off)."}
    )
    scim_hard_delete = fields.Boolean(
        required=True,
        metadata={"description": "Whether SCIM DELETE /Users removes people for good "
                  "(default: it deactivates them)."},
    )


# -- requests ----------------------------------------------------------------------------


class _Query(Schema):
    class Meta:
        unknown = EXCLUDE


class PageQuerySchema(_Query):
    """Pagination of a listing."""

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(validate=validate.Range(min=1, max=MAX_PER_PAGE))


class RunListQuerySchema(PageQuerySchema):
    """Query of ``GET imports``."""

    status = fields.String(
        validate=validate.OneOf(list(STATUS_CODES)),
        metadata={"description": "Only runs with this status."},
    )


class ChangeListQuerySchema(PageQuerySchema):
    """Query of ``GET imports/{id}/changes``."""

    kind = fields.String(
        validate=validate.OneOf([k.value for k in ChangeKind]),
        metadata={"description": "Only changes of this kind."},
    )


class HistoryQuerySchema(PageQuerySchema):
    """Query of ``GET history``."""

    source = fields.String(
        validate=validate.OneOf(["csv", "scim"]),
        metadata={"description": "Only changes from CSV runs or from SCIM."},
    )


class ImportQuerySchema(_Query):
    """Query of ``POST imports``."""

    dry_run = fields.Boolean(
        load_default=False,
        metadata={"description": "Validate and plan only: no run starts, the window stays open."},
    )
    limit = fields.Integer(
        load_default=100,
        validate=validate.Range(min=0, max=MAX_PREVIEW),
        metadata={"description": "Dry run: how many changes to include."},
    )


class ErrorsQuerySchema(_Query):
    """Query of ``GET imports/{id}/errors``."""

    format = fields.String(
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "csv for a CSV download (as `Accept: text/csv`)."},
    )


class RejectBodySchema(Schema):
    """The optional body of ``POST imports/{id}/reject`` (JSON or form)."""

    class Meta:
        unknown = EXCLUDE

    reason = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=2000),
        metadata={"description": "Why the run is rejected (shown in the history and here)."},
    )


class ImportUploadSchema(Schema):
    """The multipart body of ``POST imports``: both files, together (other parts are ignored)."""

    class Meta:
        unknown = INCLUDE

    users = fields.Raw(
        required=True,
        metadata={"type": "string", "format": "binary", "description": "Users.csv"},
    )
    employees = fields.Raw(
        required=True,
        metadata={"type": "string", "format": "binary", "description": "Employees.csv"},
    )
