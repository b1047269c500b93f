"""Admin dashboard pages: settings and tokens, templates, upload, history and the run review.

Every page is for admins only (:func:`~.auth.admin_required`) and goes through :mod:`..runs` and
:mod:`..tokens`; nothing here touches the extension's tables directly. Every POST is protected
against CSRF with Flask-WTF here, whether or not the host registered ``CSRFProtect``.

Templates live under ``templates/csvdirectory/`` and extend ``csvdirectory/layout.html``, which
extends the host's ``CSVDIRECTORY_BASE_TEMPLATE``; docs/dashboard.md lists the blocks a host can
override.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask_login import current_user
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse
from wtforms.validators import ValidationError

from .. import formats, review, runs, tokens
from .. import history as history_log
from ..changes import Change, ChangeKind, ChangeSet
from ..changestore import LegacyChanges
from ..errors import FileValidationError, IntakeRefused, RunNotFound, RunStateError
from ..extension import get_state
from ..guards import Verdict
from ..models import Channel, Phase, RunStatus, SyncRun, TokenScope
from ..records import ALL_TEAMS
from ..rows import EMPLOYEES_FILE, USERS_FILE, errors_to_csv
from .auth import admin_required, admin_required_json, current_actor, current_org
from .uploads import FORM_OVERHEAD, keep_uploads_in_memory, limit_body

PACKAGE = Path(__file__).resolve().parent.parent
#: Changes per page of a run's review.
REVIEW_PER_PAGE = 50

_CHANNEL_LABELS = {
    Channel.DASHBOARD.value: "Dashboard",
    Channel.API.value: "API",
    Channel.CLI.value: "CLI",
    Channel.REVERT.value: "Revert",
}
_PHASE_LABELS = {
    Phase.QUEUED.value: "Waiting for a worker to pick the run up",
    Phase.READING.value: "Reading and validating the files",
    Phase.PLANNING.value: "Comparing the files with the directory",
    Phase.APPLYING.value: "Applying the changes",
    Phase.DONE.value: "Done",
}
_FIELD_LABELS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "title": "Title",
    "team": "Team",
    "external_id": "Employee ID",
    "active": "Active",
    "name": "Name",
    "role": "Role",
    "teams": "Teams",
}


# -- small helpers the templates use ---------------------------------------------------------


@dataclass(frozen=True)
class Pagination:
    """One page of ``total`` items: what the pager macro needs."""

    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        """Whether a previous page exists."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """Whether a next page exists."""
        return self.page < self.pages

    @property
    def first(self) -> int:
        """1-based index of the first item shown (0 when there is none)."""
        return 0 if self.total == 0 else (self.page - 1) * self.per_page + 1

    @property
    def last(self) -> int:
        """1-based index of the last item shown."""
        return min(self.total, self.page * self.per_page)

    @classmethod
    def clamped(cls, page: int, per_page: int, total: int) -> Pagination:
        """A pagination whose page is brought within the existing pages."""
        return cls(min(max(page, 1), max(1, math.ceil(total / per_page))), per_page, total)

    def slice(self, items: list[Any]) -> list[Any]:
        """This page's part of ``items``."""
        start = (self.page - 1) * self.per_page
        return items[start : start + self.per_page]


#: The token form's choices: what a new token may call.
TOKEN_SCOPES: dict[str, tuple[TokenScope, ...]] = {
    "api": (TokenScope.API,),
    "scim": (TokenScope.SCIM,),
    "both": (TokenScope.API, TokenScope.SCIM),
}


def format_time(value: datetime | None) -> str:
    """A timestamp as admins read it, to the second: ``2025-01-31 14:05:09 UTC`` (empty for
    ``None``). Pages show it in a ``<time>`` element that the browser turns into local time."""
    return "" if value is None else f"{_utc(value):%Y-%m-%d %H:%M:%S} UTC"


def iso_time(value: datetime) -> str:
    """The machine-readable form for ``<time datetime>``: ``2025-01-31T14:05:09Z``."""
    return f"{_utc(value):%Y-%m-%dT%H:%M:%SZ}"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_size(size: int) -> str:
    """A byte count as people read it: ``100 MB``, ``512 KB``, ``900 bytes``."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def format_value(value: Any) -> str:
    """A change's field value for the review tables."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list | tuple):
        if list(value) == [ALL_TEAMS]:
            return "All teams"
        return ", ".join(str(item) for item in value) or "(none)"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {format_value(item)}" for key, item in value.items()) or "—"
    return str(value) if str(value) != "" else "(blank)"


def describe_interval(interval: timedelta) -> str:
    """``12 hours``, ``30 minutes``, ``1 hour``..."""
    seconds = int(interval.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def status_slug(run: SyncRun) -> str:
    """A CSS-friendly name of the run's status (``waiting``, ``error``...)."""
    return run.status_enum.name.lower().replace("_", "-")


def _flatten(values: dict[str, Any] | None) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if key == "extra" and isinstance(value, dict):
            flat.update({f"extra:{name}": item for name, item in value.items()})
        else:
            flat[key] = value
    return flat


def field_label(key: str) -> str:
    """The readable name of a change's field (``external_id`` -> ``Employee ID``)."""
    if key.startswith("extra:"):
        key = key.removeprefix("extra:")
    return _FIELD_LABELS.get(key, key.replace("_", " ").capitalize())


def change_diff(change: Change) -> list[tuple[str, str, str]]:
    """(field, before, after) for each field a change really changes, in a stable order
    (a field whose value stays the same, such as ``Role: Manager -> Manager``, is left out)."""
    before, after = _flatten(change.before), _flatten(change.after)
    keys = list(dict.fromkeys([*before, *after]))
    rows = [
        (field_label(key), format_value(before.get(key)), format_value(after.get(key)))
        for key in keys
        if _comparable(before.get(key)) != _comparable(after.get(key))
    ]
    return rows


def _comparable(value: Any) -> Any:
    return sorted(value) if isinstance(value, list | tuple) else value


def _access_text(values: dict[str, Any] | None) -> str:
    values = values or {}
    role, teams = values.get("role") or "", values.get("teams") or []
    if role == "Admin" or list(teams) == [ALL_TEAMS]:
        return f"{role} (all teams)"
    return f"{role} of {format_value(teams)}"


def change_summary(change: Change) -> str:
    """One line saying what a change does, for kinds that are not shown as a field diff."""
    after = change.after or {}
    match change.kind:
        case ChangeKind.TEAM_CREATED:
            return "New team"
        case ChangeKind.EMPLOYEE_CREATED:
            parts = [f"{label}: {format_value(after.get(key))}"
                     for key, label in (("title", "Title"), ("external_id", "Employee ID"))
                     if after.get(key)]
            parts += [f"{name}: {value}" for name, value in (after.get("extra") or {}).items()]
            return "New person" + (f" ({'; '.join(parts)})" if parts else "")
        case ChangeKind.EMPLOYEE_MOVED:
            return f"Moves to {format_value(after.get('team'))}"
        case ChangeKind.EMPLOYEE_DEACTIVATED:
            return "Deactivated: can no longer sign in or be managed"
        case ChangeKind.EMPLOYEE_REACTIVATED:
            return "Reactivated"
        case ChangeKind.ACCESS_GRANTED:
            return f"Gets dashboard access: {_access_text(after)}"
        case ChangeKind.ACCESS_REVOKED:
            return f"Loses dashboard access: {_access_text(change.before)}"
    return change.kind.label


def is_diff_kind(kind: ChangeKind) -> bool:
    """Whether a kind's review shows before/after per field (updates, access changes)."""
    return kind in (ChangeKind.EMPLOYEE_UPDATED, ChangeKind.ACCESS_CHANGED)


@dataclass(frozen=True)
class ReviewGroup:
    """Consecutive changes of one kind (or of ``access_reduced``) on a review page."""

    value: str
    label: str
    destructive: bool
    changes: list[Change]


def group_changes(changes: Iterable[Change]) -> list[ReviewGroup]:
    """Split a page of changes (in review order) into its kinds; reduced access changes form
    their own destructive group."""
    groups: list[ReviewGroup] = []
    for change in changes:
        reduced = review.access_reduced(change)
        value = review.ACCESS_REDUCED if reduced else change.kind.value
        if not groups or groups[-1].value != value:
            label = "Dashboard access reduced" if reduced else change.kind.label
            groups.append(ReviewGroup(value, label, review.is_destructive(change), []))
        groups[-1].changes.append(change)
    return groups


def _page_arg() -> int:
    return max(1, request.args.get("page", 1, type=int) or 1)


def _upload(storage: FileStorage | None, limit: int) -> runs.Upload | None:
    """An uploaded form file as a :class:`~..runs.Upload` (None when no file was chosen).

    At most ``limit + 1`` bytes are read, so an oversized file is refused without holding it.
    """
    if storage is None or not storage.filename:
        return None
    return runs.Upload(filename=storage.filename, data=storage.stream.read(limit + 1))


def _same_site_referrer() -> str | None:
    referrer = request.referrer
    if not referrer:
        return None
    parts, here = urlsplit(referrer), urlsplit(request.host_url)
    if (parts.scheme, parts.netloc) != (here.scheme, here.netloc):
        return None
    return referrer


def _file_format(name: str) -> formats.FileFormat | None:
    if name == USERS_FILE:
        return formats.users_format()
    if name == EMPLOYEES_FILE:
        return formats.employees_format(get_state().adapter.extra_columns)
    return None


def _prefilled(org: str, filename: str) -> bytes | None:
    """The pre-filled template ``filename`` (Users.csv or Employees.csv) of ``org``."""
    state = get_state()
    if filename == USERS_FILE:
        return formats.export_users(state.adapter.snapshot(org))
    if filename == EMPLOYEES_FILE:
        return formats.export_employees(state.adapter.snapshot(org), state.adapter.extra_columns)
    return None


def _window(org: str, interval: timedelta) -> dict[str, Any] | None:
    """Why uploads are closed now and until when, or None when the window is open. The
    sentence is :func:`runs.window_message`, the one the API and CLI give too."""
    opens_at = runs.window_opens_at(org)
    if opens_at is None:
        return None
    recent, _ = runs.list_runs(org, page=1, per_page=20)
    last = next((run for run in recent if run.is_applied and not run.is_revert), None)
    return {
        "opens_at": opens_at,
        "message": runs.window_message(opens_at),
        "last_run": last,
        "interval": describe_interval(interval),
    }


NEW_TOKEN_KEY = "csvdirectory_new_token"


def _pop_new_token(org: str) -> tuple[Any, str] | None:
    """The token created by the previous request and its plaintext, once (then forgotten)."""
    pending = session.pop(NEW_TOKEN_KEY, None)
    if not pending:
        return None
    token = next((t for t in tokens.list_tokens(org) if t.id == pending.get("id")), None)
    if token is None or not token.active:
        return None
    return token, get_state().store.decrypt(str(pending["secret"]).encode()).decode()


def _redirect(endpoint: str, **values: Any) -> BaseResponse:
    return redirect(url_for(endpoint, **values), code=303)


# -- the blueprint ---------------------------------------------------------------------------


def create_blueprint(config: dict[str, Any]) -> Blueprint:
    """Build the dashboard blueprint (endpoint prefix ``csvdirectory.``) from the config."""
    bp = Blueprint(
        "csvdirectory",
        __name__,
        template_folder=str(PACKAGE / "templates"),
        static_folder=str(PACKAGE / "static" / "csvdirectory"),
        static_url_path="/static",
    )
    runs_per_page = int(config["RUNS_PER_PAGE"])
    interval: timedelta = config["MIN_SYNC_INTERVAL"]

    @bp.context_processor
    def helpers() -> dict[str, Any]:
        return {
            "csvdirectory_csrf_token": generate_csrf,
            "csvdirectory_csrf_field": current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"),
            "format_time": format_time,
            "iso_time": iso_time,
            "format_size": format_size,
            "format_value": format_value,
            "status_slug": status_slug,
            "channel_label": lambda value: _CHANNEL_LABELS.get(value, value),
            "phase_label": lambda value: _PHASE_LABELS.get(value, value),
            "ChangeKind": ChangeKind,
        }

    @bp.before_request
    def guard_posts() -> BaseResponse | None:
        """Every POST of the blueprint, before a byte of its body is read: who is asking
        (anonymous -> the host's login, not an admin -> 403), then how much it may send, then
        CSRF (the host's CSRFProtect is told to leave the blueprint to this check, so uploads
        are parsed in memory, never spooled to disk)."""
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined,no-any-return]
        if not get_state().extension.is_admin(current_user):
            abort(403)
        file_limit = int(config["MAX_UPLOAD_BYTES"])
        if request.endpoint in ("csvdirectory.start_upload", "csvdirectory.check_upload"):
            # non-file fields (the CSRF token) are small; the parser's buffer holds up to two
            # 64 KB reads, so the field limit leaves room for that
            limit_body(2 * file_limit + FORM_OVERHEAD, form_bytes=4 * FORM_OVERHEAD)
        else:
            limit_body(int(config["MAX_FORM_BYTES"]))
        keep_uploads_in_memory(file_limit)
        if not current_app.config.get("WTF_CSRF_ENABLED", True) or g.get("csrf_valid"):
            return None
        field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        try:
            validate_csrf(request.form.get(field) or request.headers.get("X-CSRFToken"))
        except ValidationError as exc:
            raise CSRFError(exc.args[0]) from exc
        g.csrf_valid = True
        return None

    # -- errors: on the blueprint only -------------------------------------------------------

    @bp.errorhandler(IntakeRefused)
    def intake_refused(error: IntakeRefused) -> BaseResponse:
        flash(str(error.description), "error")
        run_id = (request.view_args or {}).get("run_id")
        if run_id:  # a revert refused (another run is open, ...): back to the sync's page
            return _redirect("csvdirectory.run", run_id=run_id)
        return _redirect("csvdirectory.upload")

    @bp.errorhandler(RunStateError)
    def run_state_error(error: RunStateError) -> BaseResponse:
        flash(str(error.description), "error")
        run_id = (request.view_args or {}).get("run_id")
        if run_id:
            return _redirect("csvdirectory.run", run_id=run_id)
        return _redirect("csvdirectory.history")

    @bp.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> BaseResponse:
        if isinstance(error, IntakeRefused):  # a file crossed its limit: its own message
            return intake_refused(error)
        limit = format_size(int(config["MAX_UPLOAD_BYTES"]))
        flash(
            f"The request was too large, so nothing was changed or started (each uploaded file "
            f"may have at most {limit}).",
            "error",
        )
        return _redirect("csvdirectory.upload")

    @bp.errorhandler(RunNotFound)
    def run_not_found(error: RunNotFound) -> tuple[str, int]:
        flash(str(error.description), "error")
        return render_template("csvdirectory/not_found.html"), 404

    @bp.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> BaseResponse:
        flash(
            "The form had expired or did not come from this site, so nothing was changed. "
            "Please try again.",
            "error",
        )
        return redirect(_same_site_referrer() or url_for("csvdirectory.settings"), code=303)

    # -- settings and tokens -----------------------------------------------------------------

    def render_settings(
        *,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
        token_errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        org = current_org()
        settings = runs.get_settings(org)
        recent, _ = runs.list_runs(org, page=1, per_page=1)
        new_token = _pop_new_token(org)
        body = render_template(
            "csvdirectory/settings.html",
            settings=settings,
            errors=errors or {},
            values=values,
            token_errors=token_errors or {},
            tokens=tokens.list_tokens(org),
            new_token=new_token,
            last_run=recent[0] if recent else None,
            window=_window(org, interval),
            interval=describe_interval(interval),
        )
        response = Response(body, status=status, mimetype="text/html")
        if new_token is not None:
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/", endpoint="settings")
    @admin_required
    def settings_page() -> Response:
        """Settings → Integrations → CSV Import: enable, approval rule, API tokens."""
        return render_settings()

    @bp.post("/", endpoint="save_settings")
    @admin_required
    def save_settings() -> BaseResponse:
        """Save the enable switch and the approval threshold (count, optional percentage)."""
        form = request.form
        values: dict[str, Any] = {
            "enabled": "enabled" in form,
            "approval_threshold": form.get("approval_threshold", "").strip(),
            "approval_percent": form.get("approval_percent", "").strip(),
            "scim_enabled": "scim_enabled" in form,
            "scim_hard_delete": "scim_hard_delete" in form,
            "guard_removal_percent": form.get("guard_removal_percent", "").strip(),
            "guard_removal_people": form.get("guard_removal_people", "").strip(),
        }
        errors: dict[str, str] = {}
        threshold: int | None = None
        try:
            threshold = int(values["approval_threshold"])
            if threshold < 0:
                errors["approval_threshold"] = "Enter a whole number of 0 or more."
        except ValueError:
            errors["approval_threshold"] = "Enter a whole number of 0 or more."
        percent: float | None = None
        if values["approval_percent"]:
            try:
                percent = float(values["approval_percent"])
                if not 0 <= percent <= 100 or math.isnan(percent):
                    raise ValueError
            except ValueError:
                errors["approval_percent"] = (
                    "Enter a percentage between 0 and 100, or leave it blank."
                )
        guard_percent: float | None = None
        if values["guard_removal_percent"]:
            try:
                guard_percent = float(values["guard_removal_percent"])
                if not 0 <= guard_percent <= 100 or math.isnan(guard_percent):
                    raise ValueError
            except ValueError:
                errors["guard_removal_percent"] = (
                    "Enter a percentage between 0 and 100, or leave it blank to turn it off."
                )
        guard_people: int | None = None
        if values["guard_removal_people"]:
            try:
                guard_people = int(values["guard_removal_people"])
                if guard_people < 0:
                    raise ValueError
            except ValueError:
                errors["guard_removal_people"] = (
                    "Enter a whole number of 0 or more, or leave it blank to turn it off."
                )
        if errors:
            flash("The settings were not saved: correct the fields marked below.", "error")
            return render_settings(errors=errors, values=values, status=400)
        runs.update_settings(
            current_org(),
            current_actor(),
            enabled=bool(values["enabled"]),
            approval_threshold=threshold,
            approval_percent=percent,
            scim_enabled=bool(values["scim_enabled"]),
            scim_hard_delete=bool(values["scim_hard_delete"]),
            guard_removal_percent=guard_percent,
            guard_removal_people=guard_people,
        )
        flash("CSV import settings saved.", "success")
        return _redirect("csvdirectory.settings")

    @bp.post("/tokens", endpoint="create_token")
    @admin_required
    def create_token() -> BaseResponse:
        """Create an API token and show its plaintext once, in this response only."""
        name = request.form.get("name", "").strip()
        if not name:
            return render_settings(token_errors={"name": "Give the token a name."}, status=400)
        if len(name) > 255:
            return render_settings(
                token_errors={"name": "Use at most 255 characters."}, status=400
            )
        scopes = TOKEN_SCOPES.get(request.form.get("scope", "api"))
        if scopes is None:
            return render_settings(
                token_errors={"scope": "Choose what the token is for: the CSV API, SCIM or both."},
                status=400,
            )
        token, plaintext = tokens.create_token(
            current_org(), name, current_actor().name, scopes
        )
        # Post-redirect-get: the plaintext rides in the session, encrypted, to the next page
        # view, which shows it once at the top and forgets it (a refresh creates nothing).
        session[NEW_TOKEN_KEY] = {
            "id": token.id,
            "secret": get_state().store.encrypt(plaintext.encode()).decode(),
        }
        return _redirect("csvdirectory.settings", _anchor="csvd-new-token-heading")

    @bp.post("/tokens/<int:token_id>/revoke", endpoint="revoke_token")
    @admin_required
    def revoke_token(token_id: int) -> BaseResponse:
        """Revoke one of the organization's tokens."""
        if tokens.revoke_token(current_org(), token_id):
            flash("The token was revoked: it no longer works.", "success")
        else:
            flash("No such active token.", "error")
        return _redirect("csvdirectory.settings")

    # -- templates ---------------------------------------------------------------------------

    @bp.get("/templates", endpoint="templates")
    @admin_required
    def templates_page() -> str:
        """The two file formats, column by column, with their template downloads."""
        return render_template(
            "csvdirectory/templates.html",
            file_formats=[_file_format(USERS_FILE), _file_format(EMPLOYEES_FILE)],
            notes=get_state().adapter.notes(),
        )

    @bp.get("/templates/<filename>", endpoint="download_template")
    @admin_required
    def download_template(filename: str) -> BaseResponse:
        """Users.csv or Employees.csv: the header line and an example row."""
        file_format = _file_format(filename)
        if file_format is None:
            raise RunNotFound(f"There is no template called {filename!r}.")
        return send_file(
            io.BytesIO(file_format.template()),
            mimetype="text/csv",
            as_attachment=True,
            download_name=file_format.name,
            max_age=0,
        )

    @bp.get("/templates/prefilled/<filename>", endpoint="download_prefilled")
    @admin_required
    def download_prefilled(filename: str) -> BaseResponse:
        """Users.csv or Employees.csv holding the current directory: edit and upload back (an
        untouched pair plans no change)."""
        data = _prefilled(current_org(), filename)
        if data is None:
            raise RunNotFound(f"There is no template called {filename!r}.")
        return send_file(
            io.BytesIO(data),
            mimetype="text/csv",
            as_attachment=True,
            download_name=filename,
            max_age=0,
        )

    # -- upload ------------------------------------------------------------------------------

    @bp.get("/upload", endpoint="upload")
    @admin_required
    def upload_page() -> str:
        """The upload form, or why uploads are not possible now."""
        return render_upload()

    def render_upload(check: dict[str, Any] | None = None) -> str:
        org = current_org()
        runs.reap_stuck_runs(org)
        blocking = runs.open_run(org)
        settings = runs.get_settings(org)
        return render_template(
            "csvdirectory/upload.html",
            settings=settings,
            window=_window(org, interval),
            open_run=blocking,
            open_run_message=runs.open_run_message(blocking) if blocking is not None else None,
            max_bytes=int(config["MAX_UPLOAD_BYTES"]),
            check=check,
        )

    @bp.post("/upload/check", endpoint="check_upload")
    @admin_required
    def check_upload() -> tuple[str, int]:
        """Pre-flight: validate and plan both files without creating a run or touching the
        window; say what a sync would do and whether it would apply at once or wait."""
        limit = int(config["MAX_UPLOAD_BYTES"])
        org = current_org()
        users = _upload(request.files.get("users"), limit)
        employees = _upload(request.files.get("employees"), limit)
        check: dict[str, Any] = {
            "files": [u.filename for u in (users, employees) if u is not None],
        }
        status = 200
        try:
            outcome = runs.dry_run(org, users, employees, current_actor())
        except FileValidationError as exc:
            check.update(ok=False, errors=exc.errors, error_count=exc.error_count)
            status = 422
        except IntakeRefused as exc:
            check.update(ok=False, refused=str(exc.description), errors=[], error_count=0)
            status = 400
        else:
            settings = runs.get_settings(org)
            changeset = outcome.changeset
            reasons = outcome.guard_reasons
            check.update(
                ok=True,
                outcome=outcome,
                summary=review.summarize(changeset, outcome.people),
                guard_reasons=reasons,
                would_be_refused=any(r.verdict is Verdict.REFUSE for r in reasons),
                would_wait=runs.needs_approval(
                    changeset, reasons, settings, outcome.directory_size
                ),
                settings=settings,
            )
        return render_upload(check), status

    @bp.post("/upload", endpoint="start_upload")
    @admin_required
    def start_upload() -> BaseResponse:
        """Start a run with both files; refusals are flashed by the blueprint's handlers."""
        limit = int(config["MAX_UPLOAD_BYTES"])
        run = runs.start_run(
            current_org(),
            _upload(request.files.get("users"), limit),
            _upload(request.files.get("employees"), limit),
            current_actor(),
            Channel.DASHBOARD,
        )
        flash("Both files were uploaded; processing started.", "success")
        return _redirect("csvdirectory.run", run_id=run.id)

    # -- history -----------------------------------------------------------------------------

    @bp.get("/runs", endpoint="history")
    @admin_required
    def history() -> str:
        """Every run, newest first, paginated; optionally one status only."""
        org = current_org()
        runs.reap_stuck_runs(org)
        status_name = request.args.get("status", "").upper()
        status = RunStatus[status_name] if status_name in RunStatus.__members__ else None
        page = _page_arg()
        items, total = runs.list_runs(org, status=status, page=page, per_page=runs_per_page)
        pagination = Pagination.clamped(page, runs_per_page, total)
        if pagination.page != page:
            items, total = runs.list_runs(
                org, status=status, page=pagination.page, per_page=runs_per_page
            )
        changes, _changes_total = history_log.list_entries(org, page=1, per_page=runs_per_page)
        return render_template(
            "csvdirectory/history.html",
            runs=items,
            pagination=pagination,
            status=status,
            statuses=list(RunStatus),
            kind_labels={kind.value: kind.label for kind in ChangeKind},
            changes=changes,
            change_details=history_log.details,
        )

    # -- one run -----------------------------------------------------------------------------

    def status_payload(run: SyncRun) -> dict[str, Any]:
        done, total = runs.progress(run)
        return {
            "id": run.id,
            "status": run.status,
            "status_label": run.status_label,
            "phase": run.phase,
            "phase_label": _PHASE_LABELS.get(run.phase, run.phase),
            "finished": run.is_finished,
            "waiting": run.is_waiting,
            "progress": {"done": done, "total": total},
            "change_count": run.change_count,
            "outcome": outcome_text(run),
            "state": f"{run.status}|{'finished' if run.is_finished else 'open'}",
        }

    def review_data(run: SyncRun) -> tuple[ChangeSet, review.People]:
        if run.change_count is None:
            return ChangeSet(), review.People()
        return runs.load_review(run)

    @bp.get("/runs/<run_id>", endpoint="run")
    @admin_required
    def run_page(run_id: str) -> str:
        """A run: what happened or is happening, risk first, the change set review, row
        errors, approve/reject."""
        org = current_org()
        run = runs.get_run(org, run_id)
        kind_value = request.args.get("kind", "")
        known_kinds = {*ChangeKind._value2member_map_, review.ACCESS_REDUCED}
        kind = kind_value if kind_value in known_kinds else None
        query = request.args.get("q", "").strip()
        # only the index and the pages shown are read (see changestore)
        stored = runs.stored_changes(run) if run.change_count is not None else None
        if stored is None:
            stored = LegacyChanges(ChangeSet(), review.People())
        page = _page_arg()
        shown = stored.review_page(
            kind=kind, query=query, offset=(page - 1) * REVIEW_PER_PAGE, limit=REVIEW_PER_PAGE
        )
        pagination = Pagination.clamped(page, REVIEW_PER_PAGE, shown.total)
        if pagination.page != page:  # past the last page: show the last one
            shown = stored.review_page(
                kind=kind, query=query, offset=(pagination.page - 1) * REVIEW_PER_PAGE,
                limit=REVIEW_PER_PAGE,
            )
        summary = stored.summary()
        kind_labels = {row.value: row.label for row in summary.rows}
        return render_template(
            "csvdirectory/run.html",
            run=run,
            revert_unavailable=runs.revert_unavailable_reason(run),
            conflicts=runs.load_conflicts(run) if run.is_revert else [],
            window_rule=describe_interval(interval),
            status=status_payload(run),
            summary=summary,
            confirm_text=review.confirmation(summary),
            groups=group_changes(shown.changes),
            pagination=pagination,
            kind=kind,
            kind_label=kind_labels.get(kind or "", kind),
            kind_url=lambda value: url_for(
                "csvdirectory.run", run_id=run.id, kind=value, _anchor="changes"
            ),
            query=query,
            people=shown.people,
            row_errors=runs.row_errors(run),
            guard_reasons=runs.guard_reasons(run),
            is_diff_kind=is_diff_kind,
            change_diff=change_diff,
            change_summary=change_summary,
            directory_url=config.get("DIRECTORY_URL"),
            live=not run.is_finished and not run.is_waiting,
            applied=_applied(run),
        )

    @bp.get("/runs/<run_id>/status", endpoint="run_status")
    @admin_required_json
    def run_status(run_id: str) -> Response:
        """The run's status and live progress as JSON (the run page polls it). A signed-out
        or non-admin caller gets 401/403 JSON, never a redirect to the login page."""
        org = current_org()
        runs.reap_stuck_runs(org)
        response = jsonify(status_payload(runs.get_run(org, run_id)))
        response.headers["Cache-Control"] = "no-store"
        return response

    def csv_download(data: bytes, filename: str) -> Response:
        response = Response(data, mimetype="text/csv")
        response.headers["Content-Disposition"] = f"attachment; filename={filename}"
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/runs/<run_id>/errors.csv", endpoint="run_errors")
    @admin_required
    def run_errors(run_id: str) -> Response:
        """The run's row errors as CSV: file, line, column, value, message."""
        run = runs.get_run(current_org(), run_id)
        return csv_download(errors_to_csv(runs.row_errors(run)), f"errors-{run.id[:8]}.csv")

    @bp.get("/runs/<run_id>/changes.csv", endpoint="run_changes")
    @admin_required
    def run_changes(run_id: str) -> Response:
        """The run's change set as CSV (destructive changes first), one line per field."""
        run = runs.get_run(current_org(), run_id)
        changeset, people = review_data(run)
        data = review.changes_csv(review.in_review_order(changeset), people)
        return csv_download(data, f"changes-{run.id[:8]}.csv")

    @bp.get("/runs/<run_id>/result.csv", endpoint="run_result")
    @admin_required
    def run_result(run_id: str) -> Response:
        """What an applied run left: each touched person's state after it."""
        run = runs.get_run(current_org(), run_id)
        if not _applied(run):
            raise RunNotFound("This run was not applied, so it has no result to download.")
        changeset, people = review_data(run)
        return csv_download(review.result_csv(changeset.changes, people),
                            f"result-{run.id[:8]}.csv")

    @bp.post("/runs/<run_id>/approve", endpoint="approve")
    @admin_required
    def approve(run_id: str) -> BaseResponse:
        """Approve a waiting run in the admin's name; the apply job starts."""
        actor = current_actor()
        runs.approve(current_org(), run_id, actor)
        flash(f"Approved by {actor.name}. The changes are applied in the background.", "success")
        return _redirect("csvdirectory.run", run_id=run_id)

    @bp.post("/runs/<run_id>/reject", endpoint="reject")
    @admin_required
    def reject(run_id: str) -> BaseResponse:
        """Reject a waiting run in the admin's name; nothing is applied."""
        actor = current_actor()
        runs.reject(current_org(), run_id, actor, reason=request.form.get("reason"))
        flash(
            f"Rejected by {actor.name}. Nothing was applied to the directory. A rejected run "
            "does not count in the sync window: corrected files can be uploaded now.",
            "success",
        )
        return _redirect("csvdirectory.run", run_id=run_id)

    @bp.post("/runs/<run_id>/revert", endpoint="revert")
    @admin_required
    def revert(run_id: str) -> BaseResponse:
        """Revert this sync: start a revert run in the admin's name and show it."""
        revert_run = runs.start_revert(current_org(), run_id, current_actor())
        flash(
            "Revert started: it puts back what that sync changed wherever nothing changed "
            "since. It goes through approval like any run.",
            "success",
        )
        return _redirect("csvdirectory.run", run_id=revert_run.id)

    return bp


def _applied(run: SyncRun) -> bool:
    """Whether the run's changes are in the directory (auto-approved, or approved and done)."""
    return run.is_finished and run.is_applied


def outcome_text(run: SyncRun) -> str | None:
    """What a finished run did, in one sentence: ``53 changes applied in 2.1 s.``"""
    if not run.is_finished:
        return None
    if _applied(run):
        count = run.change_count or 0
        seconds = (run.timings or {}).get("apply_seconds")
        took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
        if count == 0:
            return "Nothing to change: the directory already matched the files."
        return f"{count} change{'s' if count != 1 else ''} applied{took}."
    if run.status == RunStatus.REJECTED.value:
        return f"Rejected by {run.decided_by_name}: nothing was applied."
    if run.status == RunStatus.ERROR.value:
        return "Error while processing: nothing was applied; the directory is unchanged."
    return None
