"""The integrator JSON API: upload both files, follow the run, approve or reject it.

Every endpoint but ``openapi.json`` needs an ``Authorization: Bearer <token>`` header with an
API token of the organization (see :mod:`..tokens`); a token only ever sees its own
organization's runs. Every error has the one shape of :class:`.schemas.ErrorSchema`::

    {"error": {"status": 429, "code": "window_closed", "message": "...", "details": {...}}}

The views are thin: they parse the request, call :mod:`..runs` and dump the result through the
schemas of :mod:`.schemas`, from which :mod:`.openapi` also builds the OpenAPI document.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, g, request, url_for
from marshmallow import Schema, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import (
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)
from werkzeug.routing import Map, Rule

from .. import formats, runs
from .. import history as history_log
from ..changes import ChangeSet, kind_of
from ..errors import (
    CSVDirectoryError,
    FileTooLarge,
    FileValidationError,
    RunInProgress,
    RunNotFound,
    WindowClosed,
)
from ..extension import get_state
from ..guards import Verdict
from ..models import Channel, IdempotentResponse, SyncRun, TokenScope, utcnow
from ..rows import EMPLOYEES_FILE, USERS_FILE, errors_to_csv
from . import schemas
from .auth import current_actor, current_org, load_token
from .uploads import FORM_OVERHEAD, keep_uploads_in_memory, limit_body

BLUEPRINT_NAME = "csvdirectory_api"
#: ``status_code`` of an idempotency key whose first request is still being handled.
PENDING = 0
#: Longest accepted ``Idempotency-Key``.
MAX_KEY_LENGTH = 255

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ApiError(CSVDirectoryError, HTTPException):
    """A refusal of the API itself (bad query, bad token, idempotency conflicts)."""

    def __init__(
        self,
        status: int,
        code_name: str,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = status
        self.code_name = code_name
        self.description = message
        self.details = details
        self.extra_headers = dict(headers or {})


# -- the blueprint -------------------------------------------------------------------------


def create_blueprint(config: dict[str, Any]) -> Blueprint:
    """Build the JSON API blueprint from the extension's config."""
    blueprint = Blueprint(BLUEPRINT_NAME, __name__)
    for rule, endpoint, view, methods in ROUTES:
        blueprint.add_url_rule(rule, endpoint, view, methods=methods)
    # Routing 404/405 never reach a blueprint's handlers, so everything else under the prefix
    # lands here and is answered in the API's error shape.
    every_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    blueprint.add_url_rule("/", "fallback", fallback, defaults={"rest": ""}, methods=every_method)
    blueprint.add_url_rule("/<path:rest>", "fallback", fallback, methods=every_method)
    blueprint.before_request(authenticate)
    blueprint.register_error_handler(HTTPException, handle_http_error)
    return blueprint


def authenticate() -> None:
    """Every endpoint but the public ones needs an active bearer token of the organization.

    Runs before any view reads the body; then bounds the body (``CSVDIRECTORY_MAX_FORM_BYTES``;
    the upload endpoint raises it to two files' worth).
    """
    limit_body(int(get_state().config["MAX_FORM_BYTES"]))
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    token = load_token()
    if token is not None:
        if not token.allows(TokenScope.API):
            raise ApiError(
                403,
                "forbidden",
                "This token is for SCIM only; create a token with the CSV API scope.",
            )
        return
    sent = request.headers.get("Authorization")
    if sent:
        message = "This API token is unknown or revoked."
        challenge = 'Bearer realm="csvdirectory", error="invalid_token"'
    else:
        message = (
            "Send an API token: 'Authorization: Bearer <token>' (an admin creates one in the "
            "integration settings)."
        )
        challenge = 'Bearer realm="csvdirectory"'
    raise ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def fallback(rest: str) -> Response:
    """Anything under the prefix that no endpoint handles: 405 when the path exists, else 404."""
    adapter = Map(
        [
            Rule("/" + rule.lstrip("/"), endpoint=endpoint, methods=methods)
            for rule, endpoint, _view, methods in ROUTES
        ]
    ).bind("")
    try:
        adapter.match("/" + rest, method=request.method)
    except MethodNotAllowed as exc:
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; allowed: {', '.join(exc.valid_methods or [])}.",
            headers={"Allow": ", ".join(sorted({*(exc.valid_methods or []), "OPTIONS"}))},
        ) from None
    except (NotFound, HTTPException):
        pass
    raise ApiError(404, "not_found", "There is no such API endpoint.")


def handle_http_error(exc: HTTPException) -> Response | HTTPException:
    """Render any HTTP error raised inside the blueprint in the one error shape."""
    status = exc.code or 500
    if status < 400:
        return exc
    if status >= 500:
        get_state().session.rollback()
    code = getattr(exc, "code_name", None) or _DEFAULT_CODES.get(status) or _slug(exc.name)
    if status >= 500 and not isinstance(exc, ApiError):
        message = "An internal error occurred; it was logged. Nothing was changed by it."
    else:
        message = exc.description or exc.name
    details: Any = getattr(exc, "details", None)
    # keep what the exception adds (Allow of a 405, ...), not its HTML content type
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    headers.update(getattr(exc, "extra_headers", {}))
    if isinstance(exc, WindowClosed):
        retry_after = max(1, math.ceil((exc.opens_at - utcnow()).total_seconds()))
        headers["Retry-After"] = str(retry_after)
        details = {"opens_at": exc.opens_at.isoformat(), "retry_after": retry_after}
    elif isinstance(exc, RunInProgress):
        details = {
            "run_id": exc.run_id,
            "status_label": exc.status_label,
            "run": url_for(".get_import", run_id=exc.run_id),
        }
    elif isinstance(exc, FileValidationError):
        details = {
            "error_count": exc.error_count,
            "errors": [error.to_dict() for error in exc.errors],
        }
    body = schemas.ErrorSchema().dump(
        {"error": {"status": status, "code": code, "message": message, "details": details}}
    )
    return _json(body, status, headers)


# -- templates -----------------------------------------------------------------------------


def users_template() -> Response:
    """The Users.csv template: the exact header and one example row."""
    return _csv(formats.users_format().template(), USERS_FILE)


def employees_template() -> Response:
    """The Employees.csv template, with the host's extra columns."""
    extra = get_state().adapter.extra_columns
    return _csv(formats.employees_format(extra).template(), EMPLOYEES_FILE)


def prefilled_users() -> Response:
    """Users.csv holding the directory's dashboard access now."""
    return _csv(formats.export_users(get_state().adapter.snapshot(current_org())), USERS_FILE)


def prefilled_employees() -> Response:
    """Employees.csv holding the directory's active people now."""
    state = get_state()
    snapshot = state.adapter.snapshot(current_org())
    return _csv(formats.export_employees(snapshot, state.adapter.extra_columns), EMPLOYEES_FILE)


# -- imports -------------------------------------------------------------------------------


def create_import() -> Response:
    """Start an import of both files (202), or plan it without starting it (``dry_run``)."""
    query = _query(schemas.ImportQuerySchema)
    org = current_org()
    users, employees = _uploads()
    if query["dry_run"]:
        return _dry_run(org, users, employees, query["limit"])
    key = request.headers.get("Idempotency-Key")
    if key is None:
        run = _start(org, users, employees)
        return _accepted(run_body(run), 202)
    return _idempotent_import(org, key, users, employees)


def list_imports() -> Response:
    """One page of the organization's runs, newest first."""
    query = _query(schemas.RunListQuerySchema)
    org = current_org()
    runs.reap_stuck_runs(org)
    page, per_page = query["page"], _per_page(query)
    status = schemas.STATUS_CODES[query["status"]] if "status" in query else None
    items, total = runs.list_runs(org, status=status, page=page, per_page=per_page)
    filters = {"status": query["status"]} if "status" in query else {}
    body = schemas.RunPageSchema().dump(
        {
            "items": [_run_data(run) for run in items],
            **_page(".list_imports", {}, filters, page, per_page, total),
        }
    )
    return _json(body)


def list_history() -> Response:
    """One page of the directory's history (CSV runs and SCIM writes), newest first."""
    query = _query(schemas.HistoryQuerySchema)
    page, per_page = query["page"], _per_page(query)
    source = query.get("source")
    items, total = history_log.list_entries(
        current_org(), page=page, per_page=per_page, source=source
    )
    filters = {"source": source} if source else {}
    body = schemas.HistoryPageSchema().dump(
        {
            "items": [history_log.entry_dict(entry) for entry in items],
            **_page(".list_history", {}, filters, page, per_page, total),
        }
    )
    return _json(body)


def get_import(run_id: str) -> Response:
    """One run: status, counts, timings, files, who, error reason."""
    return _json(run_body(_run(run_id)))


def list_changes(run_id: str) -> Response:
    """One page of the run's planned changes, in apply order, optionally of one kind."""
    query = _query(schemas.ChangeListQuerySchema)
    run = _run(run_id)
    stored = runs.stored_changes(run)  # only the index and the pages shown are read
    kind = kind_of(query["kind"]) if "kind" in query else None
    page, per_page = query["page"], _per_page(query)
    total, changes = (
        stored.apply_page(kind=kind, offset=(page - 1) * per_page, limit=per_page)
        if stored is not None
        else (0, [])
    )
    counts = run.change_counts or (
        stored.counts() if stored is not None else ChangeSet().counts()
    )
    filters = {"kind": query["kind"]} if "kind" in query else {}
    body = schemas.ChangePageSchema().dump(
        {
            "run_id": run.id,
            "counts": counts,
            "items": [_change(change) for change in changes],
            **_page(".list_changes", {"run_id": run.id}, filters, page, per_page, total),
        }
    )
    return _json(body)


def list_errors(run_id: str) -> Response:
    """The run's row errors: JSON, or CSV with ``Accept: text/csv`` or ``?format=csv``."""
    query = _query(schemas.ErrorsQuerySchema)
    run = _run(run_id)
    row_errors = runs.row_errors(run)
    errors = [error.to_dict() for error in row_errors]
    wanted = query.get("format")
    if wanted is None:
        best = request.accept_mimetypes.best_match(
            ["application/json", "text/csv"], default="application/json"
        )
        wanted = "csv" if best == "text/csv" else "json"
    if wanted == "csv":
        return _csv(errors_to_csv(row_errors), f"import-{run.id}-errors.csv")
    body = schemas.RowErrorListSchema().dump(
        {
            "run_id": run.id,
            "error_count": max(run.error_count or 0, len(errors)),
            "error_reason": run.error_reason,
            "items": errors,
        }
    )
    return _json(body)


def approve_import(run_id: str) -> Response:
    """Approve a run Waiting for Approval: it is applied by a job (202)."""
    run = runs.approve(current_org(), _run_id(run_id), current_actor())
    return _accepted(run_body(_reloaded(run)), 202)


def reject_import(run_id: str) -> Response:
    """Reject a run Waiting for Approval, optionally saying why: nothing is applied."""
    data = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    try:
        body = schemas.RejectBodySchema().load(data if isinstance(data, dict) else {})
    except ValidationError as exc:
        raise ApiError(
            422,
            "validation_error",
            "Invalid body: reason must be text of at most 2000 characters.",
            details={"body": exc.normalized_messages()},  # type: ignore[no-untyped-call]
        ) from None
    run = runs.reject(current_org(), _run_id(run_id), current_actor(), reason=body["reason"])
    return _json(run_body(_reloaded(run)))


def get_settings() -> Response:
    """The organization's settings: enable switch, approval threshold, guard limits."""
    settings = runs.get_settings(current_org())
    return _json(
        schemas.SettingsSchema().dump(
            {
                "enabled": settings.enabled,
                "approval_threshold": settings.approval_threshold,
                "approval_percent": settings.approval_percent,
                "guard_removal_percent": settings.guard_removal_percent,
                "guard_removal_people": settings.guard_removal_people,
                "scim_enabled": settings.scim_enabled,
                "scim_hard_delete": settings.scim_hard_delete,
            }
        )
    )


def revert_import(run_id: str) -> Response:
    """Start a revert of an applied run (202): a new run, channel ``revert``, whose plan puts
    back what that run changed where nothing changed since. It is exempt from the sync window
    and goes through the same threshold and approval as an import."""
    run = runs.start_revert(current_org(), _run_id(run_id), current_actor())
    return _accepted(run_body(_reloaded(run)), 202)


def list_conflicts(run_id: str) -> Response:
    """A revert run's conflicts: changes of the original made since and left alone."""
    run = _run(run_id)
    conflicts = runs.load_conflicts(run)
    body = schemas.ConflictListSchema().dump(
        {
            "run_id": run.id,
            "reverts": run.reverts_run_id,
            "total": len(conflicts),
            "items": [conflict.to_dict() for conflict in conflicts],
        }
    )
    return _json(body)


def intake_status() -> Response:
    """Whether an upload may start now: the integration, the open run and the sync window,
    with the same sentence the dashboard shows."""
    org = current_org()
    runs.reap_stuck_runs(org)
    settings = runs.get_settings(org)
    blocking = runs.open_run(org)
    opens_at = runs.window_opens_at(org)
    if blocking is not None:
        message: str | None = runs.open_run_message(blocking)
    elif opens_at is not None:
        message = runs.window_message(opens_at)
    else:
        message = None
    body = schemas.IntakeStatusSchema().dump(
        {
            "integration_enabled": settings.enabled,
            "uploads_open": settings.enabled and blocking is None and opens_at is None,
            "window_opens_at": opens_at,
            "open_run": blocking.id if blocking is not None else None,
            "message": message,
        }
    )
    return _json(body)


def openapi_document() -> Response:
    """The OpenAPI 3 document of this API (public: it holds no data)."""
    from .openapi import build_spec

    server = url_for(".openapi").removesuffix("/openapi.json")
    return _json(build_spec(server))


# -- representations -----------------------------------------------------------------------


def run_body(run: SyncRun) -> dict[str, Any]:
    """The JSON representation of a run (:class:`.schemas.RunSchema`)."""
    body: dict[str, Any] = schemas.RunSchema().dump(_run_data(run))
    return body


def _run_data(run: SyncRun) -> dict[str, Any]:
    done, total = runs.progress(run)
    unavailable = runs.revert_unavailable_reason(run)
    decided = (
        {"id": run.decided_by_id, "name": run.decided_by_name} if run.decided_by_name else None
    )
    return {
        "id": run.id,
        "status": schemas.status_code(run.status),
        "status_label": run.status_label,
        "channel": run.channel,
        "uploaded_by": {"id": run.uploaded_by_id, "name": run.uploaded_by_name},
        "decided_by": decided,
        "files": {
            "users": {
                "name": run.users_filename,
                "size": run.users_size,
                "rows": run.users_rows,
            },
            "employees": {
                "name": run.employees_filename,
                "size": run.employees_size,
                "rows": run.employees_rows,
            },
        },
        "change_count": run.change_count,
        "change_counts": run.change_counts,
        "structural_change_count": run.structural_change_count,
        "guard_reasons": list(run.guard_reasons or []),
        "approval_threshold": run.threshold,
        "approval_percent": run.threshold_percent,
        "directory_size": run.directory_size,
        "replans": run.replans or 0,
        "notice": run.notice,
        "error_reason": run.error_reason,
        "error_count": run.error_count or 0,
        "reject_reason": run.reject_reason,
        "reverts": run.reverts_run_id,
        "reverted_by": run.reverted_by_run_id,
        "conflict_count": run.conflict_count,
        "revert": {"available": unavailable is None, "reason": unavailable},
        "progress": {"phase": run.phase, "done": done, "total": total},
        "timings": {
            "created_at": run.created_at,
            "started_at": run.started_at,
            "planned_at": run.planned_at,
            "decided_at": run.decided_at,
            "applied_at": run.applied_at,
            "finished_at": run.finished_at,
            "seconds": dict(run.timings or {}),
        },
        "links": {
            "self": url_for(".get_import", run_id=run.id),
            "changes": url_for(".list_changes", run_id=run.id),
            "errors": url_for(".list_errors", run_id=run.id),
            "approve": url_for(".approve_import", run_id=run.id),
            "reject": url_for(".reject_import", run_id=run.id),
            "revert": url_for(".revert_import", run_id=run.id),
            "conflicts": url_for(".list_conflicts", run_id=run.id),
        },
    }


def _change(change: Any) -> dict[str, Any]:
    return {**change.to_dict(), "label": change.kind.label}


def _page(
    endpoint: str,
    values: dict[str, Any],
    filters: dict[str, Any],
    page: int,
    per_page: int,
    total: int,
) -> dict[str, Any]:
    pages = max(1, math.ceil(total / per_page))

    def link(number: int) -> str:
        return url_for(endpoint, **values, **filters, page=number, per_page=per_page)

    return {
        "total": total,
        "page": page,
        "per_page": per_page,
        "pages": pages,
        "links": {
            "self": link(page),
            "first": link(1),
            "last": link(pages),
            "prev": link(min(page - 1, pages)) if page > 1 else None,
            "next": link(page + 1) if page < pages else None,
        },
    }


# -- intake helpers ------------------------------------------------------------------------


def _uploads() -> tuple[runs.Upload | None, runs.Upload | None]:
    """Both files of the multipart body (file parts, or plain fields holding the CSV text)."""
    limit = int(get_state().config["MAX_UPLOAD_BYTES"])
    # Refuse an oversized body while reading it (413 in the API's shape), not after: the
    # whole body, and each file as soon as it crosses the per-file limit.
    limit_body(2 * limit + FORM_OVERHEAD, form_bytes=limit + FORM_OVERHEAD)
    keep_uploads_in_memory(limit)
    try:
        return _upload("users", USERS_FILE), _upload("employees", EMPLOYEES_FILE)
    except FileTooLarge:
        raise  # one file crossed its limit: named in the message
    except RequestEntityTooLarge:
        raise ApiError(
            413,
            "request_too_large",
            f"The request is too large: each file may have at most {limit:,} bytes. Nothing "
            "was started.",
        ) from None


def _upload(field: str, default_name: str) -> runs.Upload | None:
    storage = request.files.get(field)
    if storage is not None:
        return runs.Upload(_filename(storage.filename, default_name), storage.read())
    text = request.form.get(field)
    if text is not None:
        return runs.Upload(default_name, text.encode("utf-8"))
    return None


def _filename(sent: str | None, default: str) -> str:
    name = _CONTROL.sub("", re.split(r"[\\/]", sent or "")[-1]).strip()
    return name[:255] or default


def _start(org: str, users: runs.Upload | None, employees: runs.Upload | None) -> SyncRun:
    token = g.get("csvdirectory_token")
    return runs.start_run(
        org,
        users,
        employees,
        current_actor(),
        Channel.API,
        token_id=token.id if token is not None else None,
    )


def _dry_run(
    org: str, users: runs.Upload | None, employees: runs.Upload | None, limit: int
) -> Response:
    outcome = runs.dry_run(org, users, employees, current_actor())
    settings = runs.get_settings(org)
    changes = outcome.changeset.changes
    reasons = outcome.guard_reasons
    body = schemas.DryRunSchema().dump(
        {
            "dry_run": True,
            "change_count": outcome.changeset.count,
            "change_counts": outcome.changeset.counts(),
            "structural_change_count": outcome.changeset.structural_count,
            "would_wait_for_approval": runs.needs_approval(
                outcome.changeset, reasons, settings, outcome.directory_size
            ),
            "would_be_refused": any(r.verdict is Verdict.REFUSE for r in reasons),
            "guard_reasons": [reason.to_dict() for reason in reasons],
            "approval_threshold": settings.approval_threshold,
            "approval_percent": settings.approval_percent,
            "users_rows": outcome.users_rows,
            "employees_rows": outcome.employees_rows,
            "directory_size": outcome.directory_size,
            "integration_enabled": settings.enabled,
            "window_opens_at": runs.window_opens_at(org),
            "changes": [_change(change) for change in changes[:limit]],
            "changes_truncated": len(changes) > limit,
            "seconds": dict(outcome.timings),
        }
    )
    return _json(body)


def _idempotent_import(
    org: str, key: str, users: runs.Upload | None, employees: runs.Upload | None
) -> Response:
    """Start the import once per key: a retry gets the first response, not a second run.

    The key is reserved (a pending row, unique per organization and key) before the run
    starts, so of two simultaneous requests only one starts a run; the other gets 409. Only an
    accepted import is remembered: a refusal frees the key, so the retry is tried again.
    """
    if not key.strip() or len(key) > MAX_KEY_LENGTH or _CONTROL.search(key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"An Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.",
        )
    digest = _request_hash(users, employees)
    session = get_state().session
    record = _reserve(org, key, digest)
    if record is not None:
        if record.request_hash != digest:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request; use a new "
                "key for a new import.",
            )
        if record.status_code != PENDING:
            response = _accepted(record.body, record.status_code)
            response.headers["Idempotent-Replayed"] = "true"
            return response
        raise ApiError(
            409,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being handled; retry shortly.",
            headers={"Retry-After": "1"},
        )
    try:
        run = _start(org, users, employees)
    except Exception:
        session.rollback()
        session.execute(
            delete(IdempotentResponse).where(
                IdempotentResponse.org == org,
                IdempotentResponse.key == key,
                IdempotentResponse.status_code == PENDING,
            )
        )
        session.commit()
        raise
    body = run_body(run)
    session.execute(
        update(IdempotentResponse)
        .where(IdempotentResponse.org == org, IdempotentResponse.key == key)
        .values(status_code=202, body=body)
    )
    session.commit()
    return _accepted(body, 202)


def _reserve(org: str, key: str, digest: str) -> IdempotentResponse | None:
    """Reserve ``key`` for this request; return the existing record when it is taken."""
    session = get_state().session
    query = select(IdempotentResponse).where(
        IdempotentResponse.org == org, IdempotentResponse.key == key
    )
    record = session.scalar(query)
    if record is None:
        session.add(
            IdempotentResponse(org=org, key=key, request_hash=digest, status_code=PENDING, body={})
        )
        try:
            session.commit()
            return None
        except IntegrityError:  # a simultaneous request with the same key won the race
            session.rollback()
            record = session.scalar(query)
            if record is None:  # it failed and freed the key meanwhile: the client may retry
                raise ApiError(
                    409,
                    "idempotency_key_in_use",
                    "A request with this Idempotency-Key is being handled; retry shortly.",
                    headers={"Retry-After": "1"},
                ) from None
            return record
    stale: timedelta = get_state().config["HEARTBEAT_GRACE"]
    if record.status_code == PENDING and record.request_hash == digest:
        # A reservation whose request died half-way (the process stopped): take it over.
        taken = session.execute(
            update(IdempotentResponse)
            .where(
                IdempotentResponse.id == record.id,
                IdempotentResponse.status_code == PENDING,
                IdempotentResponse.created_at < utcnow() - stale,
            )
            .values(created_at=utcnow())
        )
        session.commit()
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return None
    return record


def _request_hash(users: runs.Upload | None, employees: runs.Upload | None) -> str:
    digest = hashlib.sha256()
    for field, upload in (("users", users), ("employees", employees)):
        digest.update(field.encode() + b"\0")
        if upload is not None:
            digest.update(upload.filename.encode() + b"\0")
            digest.update(hashlib.sha256(upload.data).digest())
        digest.update(b"\0")
    return digest.hexdigest()


# -- small helpers -------------------------------------------------------------------------


def _query(schema: type[Schema]) -> dict[str, Any]:
    """The query string loaded through ``schema``; 422 with every invalid parameter."""
    try:
        loaded: dict[str, Any] = schema().load(request.args.to_dict())
        return loaded
    except ValidationError as exc:
        raise ApiError(
            422,
            "validation_error",
            "Invalid query parameters: "
            + "; ".join(
                f"{name}: {' '.join(map(str, _flat(msgs)))}"
                for name, msgs in sorted(
                    exc.normalized_messages().items()  # type: ignore[no-untyped-call]
                )
            ),
            details={"query": exc.normalized_messages()},  # type: ignore[no-untyped-call]
        ) from None


def _flat(messages: Any) -> list[Any]:
    if isinstance(messages, list):
        return messages
    if isinstance(messages, dict):
        return [message for value in messages.values() for message in _flat(value)]
    return [messages]


def _per_page(query: dict[str, Any]) -> int:
    default = int(get_state().config["RUNS_PER_PAGE"])
    return int(query.get("per_page") or min(max(default, 1), schemas.MAX_PER_PAGE))


def _run_id(run_id: str) -> str:
    """Ids are 32 hex digits; anything else cannot exist (and must not reach the database)."""
    if not re.fullmatch(r"[0-9a-f]{32}", run_id):
        raise RunNotFound()
    return run_id


def _run(run_id: str) -> SyncRun:
    org = current_org()
    runs.reap_stuck_runs(org)
    return runs.get_run(org, _run_id(run_id))


def _reloaded(run: SyncRun) -> SyncRun:
    """The run as its (possibly inline) job left it."""
    session = get_state().session
    session.expire_all()
    return session.get(SyncRun, run.id) or run


def _accepted(body: dict[str, Any], status: int) -> Response:
    response = _json(body, status)
    link = body.get("links", {}).get("self") if isinstance(body, dict) else None
    if link:
        response.headers["Location"] = link
    return response


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response: Response = current_app.json.response(body)  # type: ignore[assignment]
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _csv(data: bytes, filename: str) -> Response:
    return Response(
        data,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "error"


#: (rule, endpoint, view, methods) of every endpoint, relative to the API's prefix.
ROUTES: tuple[tuple[str, str, Callable[..., Response], list[str]], ...] = (
    ("/openapi.json", "openapi", openapi_document, ["GET"]),
    ("/templates/users.csv", "users_template", users_template, ["GET"]),
    ("/templates/employees.csv", "employees_template", employees_template, ["GET"]),
    ("/templates/prefilled/users.csv", "prefilled_users", prefilled_users, ["GET"]),
    ("/templates/prefilled/employees.csv", "prefilled_employees", prefilled_employees, ["GET"]),
    ("/settings", "get_settings", get_settings, ["GET"]),
    ("/imports", "create_import", create_import, ["POST"]),
    ("/imports", "list_imports", list_imports, ["GET"]),
    ("/imports/<run_id>", "get_import", get_import, ["GET"]),
    ("/imports/<run_id>/changes", "list_changes", list_changes, ["GET"]),
    ("/imports/<run_id>/errors", "list_errors", list_errors, ["GET"]),
    ("/imports/<run_id>/approve", "approve_import", approve_import, ["POST"]),
    ("/imports/<run_id>/reject", "reject_import", reject_import, ["POST"]),
    ("/history", "list_history", list_history, ["GET"]),
    ("/imports/<run_id>/revert", "revert_import", revert_import, ["POST"]),
    ("/imports/<run_id>/conflicts", "list_conflicts", list_conflicts, ["GET"]),
    ("/status", "intake_status", intake_status, ["GET"]),
)
PUBLIC_ENDPOINTS = frozenset({f"{BLUEPRINT_NAME}.openapi", f"{BLUEPRINT_NAME}.fallback"})
