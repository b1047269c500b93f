"""The OpenAPI 3 document of the JSON API, generated from :mod:`.schemas` with apispec.

Served at ``<API prefix>/openapi.json``. Paths are relative to the one server, the API's prefix,
so the document stays right wherever the host mounts the API.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from ..changes import ChangeKind
from . import schemas

TITLE = "flask-csvdirectory import API"
VERSION = "1.0.0"
OPENAPI_VERSION = "3.0.3"

_RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "description": "The run's id (32 hexadecimal digits).",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retried import safe: the same key and the same files return the "
    "first response (same status and body) instead of starting a second run. The same key "
    "with different files is refused (422). Ignored by dry runs.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"},
}


def _json(schema: type[Schema], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return _json(schemas.ErrorSchema, description, **extra)


def _header(description: str, type_: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": type_}}


_UNAUTHORIZED = _error(
    "No token, an unknown token or a revoked one (code unauthorized).",
    headers={"WWW-Authenticate": _header('Bearer realm="csvdirectory"')},
)
_NOT_FOUND = _error("No such run in the token's organization (code not_found).")
_INVALID_QUERY = _error("An invalid query parameter (code validation_error).")
_SERVER_ERROR = _error("An unexpected error (code internal_error); nothing was changed by it.")
_CSV = {"text/csv": {"schema": {"type": "string"}}}


def _secured(operation: dict[str, Any], *, query: bool = False) -> dict[str, Any]:
    responses = operation.setdefault("responses", {})
    responses.setdefault("401", _UNAUTHORIZED)
    if query:
        responses.setdefault("422", _INVALID_QUERY)
    responses.setdefault("500", _SERVER_ERROR)
    operation["security"] = [{"bearerAuth": []}]
    return operation


def build_spec(server: str) -> dict[str, Any]:
    """The OpenAPI document, with ``server`` (the API's prefix URL) as its one server."""
    spec = APISpec(
        title=TITLE,
        version=VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={
            "description": "Upload Users.csv and Employees.csv together, follow the import run, "
            "and approve or reject it. Every error has the shape of the Error schema."
        },
        servers=[{"url": server or "/"}],
    )
    spec.components.security_scheme(
        "bearerAuth",
        {"type": "http", "scheme": "bearer", "description": "An API token of the organization."},
    )
    for name, schema in (
        ("Error", schemas.ErrorSchema),
        ("GuardReason", schemas.GuardReasonSchema),
        ("Run", schemas.RunSchema),
        ("RunPage", schemas.RunPageSchema),
        ("Change", schemas.ChangeSchema),
        ("ChangePage", schemas.ChangePageSchema),
        ("RowErrorList", schemas.RowErrorListSchema),
        ("DryRun", schemas.DryRunSchema),
        ("Settings", schemas.SettingsSchema),
        ("ConflictList", schemas.ConflictListSchema),
        ("IntakeStatus", schemas.IntakeStatusSchema),
        ("ImportUpload", schemas.ImportUploadSchema),
        ("HistoryPage", schemas.HistoryPageSchema),
    ):
        spec.components.schema(name, schema=schema)

    spec.path(
        path="/openapi.json",
        operations={
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This OpenAPI document (no token needed).",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    )
    for which, file_name in (("users", "Users.csv"), ("employees", "Employees.csv")):
        spec.path(
            path=f"/templates/{which}.csv",
            operations={
                "get": _secured(
                    {
                        "operationId": f"get{which.title()}Template",
                        "summary": f"The {file_name} template: its header and an example row.",
                        "tags": ["templates"],
                        "responses": {
                            "200": {"description": f"{file_name}, UTF-8.", "content": _CSV}
                        },
                    }
                )
            },
        )

    for which, file_name in (("users", "Users.csv"), ("employees", "Employees.csv")):
        spec.path(
            path=f"/templates/prefilled/{which}.csv",
            operations={
                "get": _secured(
                    {
                        "operationId": f"getPrefilled{which.title()}",
                        "summary": f"{file_name} holding the directory as it is now; uploaded "
                        "back unchanged with its pair, it plans no change.",
                        "tags": ["templates"],
                        "responses": {
                            "200": {"description": f"{file_name}, UTF-8.", "content": _CSV}
                        },
                    }
                )
            },
        )

    spec.path(
        path="/imports",
        operations={
            "post": _secured(
                {
                    "operationId": "createImport",
                    "summary": "Start an import of both files, or plan it (dry_run=true).",
                    "description": "The body is multipart/form-data with both files, `users` "
                    "(Users.csv) and `employees` (Employees.csv). The run starts at once and "
                    "is processed by a job: follow it at the Location returned. With "
                    "`dry_run=true` the files are validated and planned against the directory "
                    "as it is now; nothing starts and the 12-hour window stays open.",
                    "tags": ["imports"],
                    "parameters": [
                        {"in": "query", "schema": schemas.ImportQuerySchema},
                        _IDEMPOTENCY_KEY,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"multipart/form-data": {"schema": "ImportUpload"}},
                    },
                    "responses": {
                        "200": _json(schemas.DryRunSchema, "The plan of a dry run."),
                        "202": _json(
                            schemas.RunSchema,
                            "The run started (or, for a retried Idempotency-Key, the first "
                            "response again).",
                            headers={
                                "Location": _header("The run's URL."),
                                "Idempotent-Replayed": _header(
                                    "true when this is the stored first response."
                                ),
                            },
                        ),
                        "400": _error(
                            "A file is missing or empty (missing_file), the files have errors "
                            "(invalid_files: every row error in details; dry runs only, a run "
                            "records them instead), or a bad Idempotency-Key "
                            "(invalid_idempotency_key)."
                        ),
                        "409": _error(
                            "The integration is disabled for the organization "
                            "(integration_disabled), another run is still open "
                            "(run_in_progress: details name it; approve or reject it first), "
                            "or a request with the same "
                            "Idempotency-Key is still being handled (idempotency_key_in_use).",
                            headers={"Retry-After": _header("Seconds to wait.", "integer")},
                        ),
                        "413": _error(
                            "A file is over CSVDIRECTORY_MAX_UPLOAD_BYTES (file_too_large) or "
                            "the whole body is far over it (request_too_large)."
                        ),
                        "422": _error(
                            "An invalid query parameter (validation_error), or an "
                            "Idempotency-Key already used with other files "
                            "(idempotency_key_reused)."
                        ),
                        "429": _error(
                            "The sync window is closed (window_closed): a sync was applied "
                            "less than 12 hours ago. details.opens_at says when it reopens, "
                            "to the second, rounded up.",
                            headers={"Retry-After": _header("Seconds until it opens.", "integer")},
                        ),
                    },
                }
            ),
            "get": _secured(
                {
                    "operationId": "listImports",
                    "summary": "The organization's runs, newest first, one page at a time.",
                    "tags": ["imports"],
                    "parameters": [{"in": "query", "schema": schemas.RunListQuerySchema}],
                    "responses": {"200": _json(schemas.RunPageSchema, "One page of runs.")},
                },
                query=True,
            ),
        },
    )
    spec.path(
        path="/settings",
        operations={
            "get": _secured(
                {
                    "operationId": "getSettings",
                    "summary": "The organization's settings: enabled, approval threshold, "
                    "guard limits (an admin edits them on the dashboard).",
                    "tags": ["settings"],
                    "responses": {"200": _json(schemas.SettingsSchema, "The settings.")},
                }
            )
        },
    )
    spec.path(
        path="/imports/{run_id}",
        parameters=[_RUN_ID],
        operations={
            "get": _secured(
                {
                    "operationId": "getImport",
                    "summary": "One run: status, counts, files, timings, who, error reason.",
                    "tags": ["imports"],
                    "responses": {"200": _json(schemas.RunSchema, "The run."), "404": _NOT_FOUND},
                }
            )
        },
    )
    spec.path(
        path="/imports/{run_id}/changes",
        parameters=[_RUN_ID],
        operations={
            "get": _secured(
                {
                    "operationId": "listImportChanges",
                    "summary": "The run's planned changes, in apply order, one page at a time.",
                    "description": "Kinds: "
                    + ", ".join(f"`{kind.value}` ({kind.label})" for kind in ChangeKind)
                    + ".",
                    "tags": ["imports"],
                    "parameters": [{"in": "query", "schema": schemas.ChangeListQuerySchema}],
                    "responses": {
                        "200": _json(schemas.ChangePageSchema, "One page of changes."),
                        "404": _NOT_FOUND,
                    },
                },
                query=True,
            )
        },
    )
    spec.path(
        path="/imports/{run_id}/errors",
        parameters=[_RUN_ID],
        operations={
            "get": _secured(
                {
                    "operationId": "listImportErrors",
                    "summary": "The run's row errors (file, line, column, value, message).",
                    "description": "JSON by default; CSV with `Accept: text/csv` or `format=csv`.",
                    "tags": ["imports"],
                    "parameters": [{"in": "query", "schema": schemas.ErrorsQuerySchema}],
                    "responses": {
                        "200": {
                            "description": "The row errors.",
                            "content": {
                                "application/json": {"schema": schemas.RowErrorListSchema},
                                **_CSV,
                            },
                        },
                        "404": _NOT_FOUND,
                    },
                },
                query=True,
            )
        },
    )
    spec.path(
        path="/history",
        operations={
            "get": _secured(
                {
                    "operationId": "listHistory",
                    "summary": "Every change to the directory (CSV runs and SCIM writes), "
                    "newest first, one page at a time.",
                    "tags": ["history"],
                    "parameters": [{"in": "query", "schema": schemas.HistoryQuerySchema}],
                    "responses": {"200": _json(schemas.HistoryPageSchema, "One page.")},
                },
                query=True,
            )
        },
    )
    for action, status, verb in (
        ("approve", "202", "Approve a run Waiting for Approval; a job then applies it."),
        ("reject", "200", "Reject a run Waiting for Approval; nothing is applied."),
    ):
        operation: dict[str, Any] = {
            "operationId": f"{action}Import",
            "summary": verb,
            "description": "The token is recorded as who decided.",
            "tags": ["imports"],
            "responses": {
                status: _json(schemas.RunSchema, "The run after the decision."),
                "404": _NOT_FOUND,
                "409": _error("The run is not Waiting for Approval (invalid_state)."),
            },
        }
        if action == "reject":
            operation["description"] += (
                " An optional `reason` (JSON or form field) is kept and shown in the history. "
                "A rejected run does not count in the sync window."
            )
            operation["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {"schema": schemas.RejectBodySchema},
                    "application/x-www-form-urlencoded": {"schema": schemas.RejectBodySchema},
                },
            }
            operation["responses"]["422"] = _error("The reason is too long (validation_error).")
        spec.path(
            path=f"/imports/{{run_id}}/{action}",
            parameters=[_RUN_ID],
            operations={"post": _secured(operation)},
        )
    spec.path(
        path="/imports/{run_id}/revert",
        parameters=[_RUN_ID],
        operations={
            "post": _secured(
                {
                    "operationId": "revertImport",
                    "summary": "Revert an applied sync: start a new run (channel revert).",
                    "description": "The new run's plan puts back what the sync changed, field "
                    "by field, where the directory still holds what the sync wrote; anything "
                    "changed since is left alone and listed as a conflict. It goes through the "
                    "same approval threshold as an import and is exempt from the sync window. "
                    "People the sync created are deactivated; teams it created are kept.",
                    "tags": ["imports"],
                    "responses": {
                        "202": _json(
                            schemas.RunSchema,
                            "The revert run started.",
                            headers={"Location": _header("The revert run's URL.")},
                        ),
                        "404": _NOT_FOUND,
                        "409": _error(
                            "The run cannot be reverted (revert_unavailable: not applied, "
                            "already reverted, or its before-values were purged by the "
                            "retention period), another run is open (run_in_progress), or "
                            "the integration is disabled (integration_disabled)."
                        ),
                    },
                }
            )
        },
    )
    spec.path(
        path="/imports/{run_id}/conflicts",
        parameters=[_RUN_ID],
        operations={
            "get": _secured(
                {
                    "operationId": "listImportConflicts",
                    "summary": "A revert run's conflicts: changes made since, left alone.",
                    "tags": ["imports"],
                    "responses": {
                        "200": _json(schemas.ConflictListSchema, "The conflicts."),
                        "404": _NOT_FOUND,
                    },
                }
            )
        },
    )
    spec.path(
        path="/status",
        operations={
            "get": _secured(
                {
                    "operationId": "getIntakeStatus",
                    "summary": "Whether an import may start now, and if not why and until when.",
                    "tags": ["imports"],
                    "responses": {
                        "200": _json(schemas.IntakeStatusSchema, "The intake status."),
                    },
                }
            )
        },
    )
    return spec.to_dict()
