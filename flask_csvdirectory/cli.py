"""``flask csvdirectory ...``: sync from the shell, run a worker, maintain the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, Protocol

import click
from flask import current_app
from flask.cli import with_appcontext

from . import runs, tokens
from .changes import Change, ChangeSet, kind_of
from .errors import (
    CSVDirectoryError,
    FileValidationError,
    IntakeRefused,
    IntegrationDisabled,
    RunNotFound,
    RunStateError,
)
from .extension import get_state
from .models import Channel, IntegrationSettings, RunStatus, SyncRun, utcnow

#: Exit codes, for scripts: 0 done, 1 failed, 2 wrong usage (click), 3 refused, 4 invalid files.
EXIT_FAILED = 1
EXIT_REFUSED = 3
EXIT_INVALID_FILES = 4


class CommandError(click.ClickException):
    """A command ended without doing its job: a sentence for the operator and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


def _sentence(exc: BaseException) -> str:
    """The plain message of an error: werkzeug's ``description``, never "409 Conflict: ..."."""
    description = getattr(exc, "description", None)
    return str(description) if isinstance(description, str) and description else str(exc)


@contextmanager
def _operator_errors(org: str) -> Iterator[None]:
    """Turn the extension's errors into sentences with the exit code of their kind."""
    try:
        yield
    except FileValidationError as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        raise CommandError(
            f"The files have {exc.error_count} error(s); nothing was changed.",
            EXIT_INVALID_FILES,
        ) from None
    except IntegrationDisabled:
        raise CommandError(
            f"The CSV import integration is disabled for organization {org!r}. Enable it with: "
            f"flask csvdirectory settings enable --org {org}",
            EXIT_REFUSED,
        ) from None
    except RunNotFound:
        raise CommandError(
            f"Organization {org!r} has no import run with that id "
            "(list them with: flask csvdirectory runs).",
            EXIT_REFUSED,
        ) from None
    except (IntakeRefused, RunStateError) as exc:
        raise CommandError(_sentence(exc), EXIT_REFUSED) from None
    except CSVDirectoryError as exc:
        raise CommandError(_sentence(exc), EXIT_FAILED) from None


def _org(org: str | None) -> str:
    return org or str(get_state().config["DEFAULT_ORGANIZATION"])


ORG_OPTION = click.option(
    "--org", default=None, help="Organization key (default: CSVDIRECTORY_DEFAULT_ORGANIZATION)."
)
ACTOR_OPTION = click.option(
    "--as", "actor_name", default="command line", show_default=True,
    help="The name recorded for this action (shown as 'Approved by NAME', ...).",
)


@click.group("csvdirectory")
def csvdirectory_cli() -> None:
    """Directory integration by CSV import.

    Exit codes: 0 done, 1 failed, 2 wrong usage, 3 refused (disabled, window closed, not
    found, not waiting, rejected), 4 invalid files.
    """


class _Plan(Protocol):
    """What the plan summary prints: a :class:`ChangeSet` in memory, or a run's stored change
    set (its index and first page only)."""

    @property
    def count(self) -> int: ...

    @property
    def structural_count(self) -> int: ...

    def counts(self) -> dict[str, int]: ...

    def head(self, limit: int) -> list[Change]: ...


def _stored_plan(run: SyncRun) -> _Plan:
    """The run's stored plan for :func:`_print_plan`: read from its index and first pages,
    never decrypted whole."""
    stored = runs.stored_changes(run)
    return ChangeSet() if stored is None else stored


def _print_plan(changeset: _Plan, limit: int, option: str = "--show", indent: str = "") -> None:
    click.echo(
        f"{indent}{changeset.count} change(s), {changeset.structural_count} structural:"
    )
    for kind, count in changeset.counts().items():
        if count:
            click.echo(f"{indent}  {kind_of(kind).label}: {count}")
    for change in changeset.head(limit):
        before = json.dumps(change.before) if change.before else ""
        after = json.dumps(change.after) if change.after else ""
        line = f"{indent}  - {change.kind.value:22} {change.subject}  {before} -> {after}"
        click.echo(line.rstrip())
    if changeset.count > limit:
        click.echo(
            f"{indent}  ... and {changeset.count - limit} more ({option} N to list more)"
        )


@csvdirectory_cli.command("sync")
@click.argument("users", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("employees", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing, record no run.")
@ORG_OPTION
@click.option("--yes", is_flag=True,
              help="Approve a plan above the threshold without asking (never a plan held by a "
              "safeguard).")
@ACTOR_OPTION
@click.option("--show", default=20, show_default=True, help="How many changes to list.")
@with_appcontext
def sync_command(
    users: Path, employees: Path, dry_run: bool, org: str | None, yes: bool, actor_name: str,
    show: int,
) -> None:
    """Validate USERS and EMPLOYEES, print the plan, and apply it (one run, channel "cli")."""
    org = _org(org)
    users_upload = runs.Upload(users.name, users.read_bytes())
    employees_upload = runs.Upload(employees.name, employees.read_bytes())
    actor = runs.Actor(id=None, name=actor_name)
    with _operator_errors(org):
        if dry_run:
            outcome = runs.dry_run(org, users_upload, employees_upload)
            _print_plan(outcome.changeset, show)
            for reason in outcome.guard_reasons:
                click.echo(f"Safeguard ({reason.verdict.value}): {reason.message}")
            click.echo("Dry run: nothing was changed.")
            return
        run = runs.start_run(
            org, users_upload, employees_upload, actor, Channel.CLI, enqueue=False
        )
        _run_here(runs.process, run, "Processing")
        if run.status == RunStatus.ERROR.value:
            _fail_run(run)
        if run.status == RunStatus.WAITING.value:
            changeset = _stored_plan(run)
            _print_plan(changeset, show)
            reasons = runs.guard_reasons(run)
            for reason in reasons:
                click.echo(f"Safeguard: {reason.message}")
            if reasons and yes:
                raise CommandError(
                    f"Run {run.id} waits for approval: the safeguards above need a person to "
                    "approve it (--yes does not), on the dashboard, the API or with "
                    f"'flask csvdirectory approve {run.id}'. Nothing was changed.",
                    EXIT_REFUSED,
                )
            if not reasons:
                click.echo(
                    f"{changeset.structural_count} structural changes exceed the approval "
                    "threshold."
                )
            if not yes and not click.confirm("Approve and apply them?", default=False):
                runs.reject(org, run.id, actor, reason="Declined at the command line")
                raise CommandError(
                    f"Run {run.id} was rejected: nothing was changed.", EXIT_REFUSED
                )
            _approve_and_apply(org, run, actor)
        else:
            _print_plan(_stored_plan(run), show)
    if run.status == RunStatus.ERROR.value:
        _fail_run(run)
    click.echo(f"Run {run.id}: {run.status_label}.")


def _fail_run(run: SyncRun) -> NoReturn:
    """Print a failed run's row errors and end with its reason (invalid files: exit 4)."""
    errors = runs.row_errors(run)
    for error in errors:
        click.echo(str(error), err=True)
    reason = run.error_reason or "The run failed."
    raise CommandError(
        f"Run {run.id} ended in Error while processing: {reason}",
        EXIT_INVALID_FILES if run.error_count else EXIT_FAILED,
    )


def _approve_and_apply(org: str, run: SyncRun, actor: runs.Actor) -> None:
    """Approve a waiting run and apply it in this process, with a progress bar."""
    runs.approve(org, run.id, actor, enqueue=False)
    _run_here(runs.apply_approved, run, "Applying")


def _run_here(job: Callable[..., None], run: SyncRun, label: str) -> None:
    """Run a job of ``run`` in this process with a progress bar, then reload the run.

    A job that raises has already ended its run in Error while processing (with the reason,
    the directory unchanged): the caller reports that from the run, not as a traceback.
    """
    with click.progressbar(length=1, label=label, show_pos=True) as bar:
        try:
            job(run.id, worker="cli", progress=_bar_progress(bar))
        except Exception:
            current_app.logger.debug("job of run %s failed", run.id, exc_info=True)
    session = get_state().session
    session.rollback()
    session.refresh(run)


def _bar_progress(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        bar.length = max(total, 1)
        bar.update(done - bar.pos)

    return update


# -- settings ------------------------------------------------------------------------------


def _describe_settings(settings: IntegrationSettings) -> str:
    state = "enabled" if settings.enabled else "disabled"
    threshold = f"more than {settings.approval_threshold} change(s)"
    if settings.approval_percent is not None:
        threshold += f" or more than {settings.approval_percent:g}% of the directory"
    removal = [
        f"{settings.guard_removal_percent:g}% of the directory"
        if settings.guard_removal_percent is not None else None,
        f"{settings.guard_removal_people} people"
        if settings.guard_removal_people is not None else None,
    ]
    limits = " or ".join(limit for limit in removal if limit)
    guard = (
        f"The mass-removal safeguard holds a run that would deactivate more than {limits}."
        if limits
        else "The mass-removal safeguard is off."
    )
    updated = f"{settings.updated_at:%Y-%m-%d %H:%M} UTC" if settings.updated_at else "never"
    by = f" by {settings.updated_by}" if settings.updated_by else ""
    return (
        f"The CSV import integration of organization {settings.org!r} is {state}.\n"
        f"A run waits for approval when it has {threshold}.\n"
        f"{guard}\n"
        f"Last changed {updated}{by}."
    )


@csvdirectory_cli.group("settings", invoke_without_command=True)
@ORG_OPTION
@click.pass_context
@with_appcontext
def settings_cli(ctx: click.Context, org: str | None) -> None:
    """Show or change an organization's settings (what the dashboard's settings page does)."""
    if ctx.invoked_subcommand is None:
        click.echo(_describe_settings(runs.get_settings(_org(org))))


@settings_cli.command("show")
@ORG_OPTION
@with_appcontext
def settings_show_command(org: str | None) -> None:
    """Print the settings."""
    click.echo(_describe_settings(runs.get_settings(_org(org))))


@settings_cli.command("enable")
@ORG_OPTION
@ACTOR_OPTION
@with_appcontext
def settings_enable_command(org: str | None, actor_name: str) -> None:
    """Enable the integration: uploads are accepted."""
    settings = runs.update_settings(_org(org), runs.Actor(None, actor_name), enabled=True)
    click.echo(f"Enabled the CSV import integration of organization {settings.org!r}.")


@settings_cli.command("disable")
@ORG_OPTION
@ACTOR_OPTION
@with_appcontext
def settings_disable_command(org: str | None, actor_name: str) -> None:
    """Disable the integration: uploads are refused (runs already started go on)."""
    settings = runs.update_settings(_org(org), runs.Actor(None, actor_name), enabled=False)
    click.echo(f"Disabled the CSV import integration of organization {settings.org!r}.")


@settings_cli.command("set")
@ORG_OPTION
@ACTOR_OPTION
@click.option(
    "--threshold", type=click.IntRange(min=0), default=None,
    help="A run with more changes than this waits for approval.",
)
@click.option(
    "--percent", type=click.FloatRange(0, 100), default=None,
    help="A run changing more than this percentage of the directory also waits.",
)
@click.option("--no-percent", is_flag=True, help="Drop the percentage rule.")
@click.option(
    "--removal-percent", type=click.FloatRange(0, 100), default=None,
    help="Safeguard: hold a run deactivating more than this share of the directory.",
)
@click.option(
    "--removal-people", type=click.IntRange(min=0), default=None,
    help="Safeguard: hold a run deactivating more than this many people.",
)
@click.option("--no-removal-guard", is_flag=True, help="Turn the mass-removal safeguard off.")
@click.option("--enable/--disable", "enabled", default=None, help="Enable or disable uploads.")
@with_appcontext
def settings_set_command(
    org: str | None, actor_name: str, threshold: int | None, percent: float | None,
    no_percent: bool, removal_percent: float | None, removal_people: int | None,
    no_removal_guard: bool, enabled: bool | None,
) -> None:
    """Change the approval threshold, the safeguards and more in one go."""
    if percent is not None and no_percent:
        raise click.UsageError("Give either --percent or --no-percent, not both.")
    if no_removal_guard and (removal_percent is not None or removal_people is not None):
        raise click.UsageError(
            "Give either --no-removal-guard or --removal-percent/--removal-people, not both."
        )
    if (
        threshold is None and percent is None and not no_percent and enabled is None
        and removal_percent is None and removal_people is None and not no_removal_guard
    ):
        raise click.UsageError(
            "Nothing to change: give --threshold, --percent, --no-percent, --removal-percent, "
            "--removal-people, --no-removal-guard or --enable/--disable."
        )

    def keep_or(value: Any) -> Any:  # False: leave the setting as it is
        return None if no_removal_guard else (value if value is not None else False)

    settings = runs.update_settings(
        _org(org),
        runs.Actor(None, actor_name),
        enabled=enabled,
        approval_threshold=threshold,
        approval_percent=None if no_percent else (percent if percent is not None else False),
        guard_removal_percent=keep_or(removal_percent),
        guard_removal_people=keep_or(removal_people),
    )
    click.echo("Saved. " + _describe_settings(settings))


# -- API tokens ----------------------------------------------------------------------------


@csvdirectory_cli.group("tokens", invoke_without_command=True)
@ORG_OPTION
@click.pass_context
@with_appcontext
def tokens_cli(ctx: click.Context, org: str | None) -> None:
    """API tokens (JSON API and SCIM): create, list, revoke."""
    if ctx.invoked_subcommand is None:
        _list_tokens(_org(org))


def _list_tokens(org: str) -> None:
    found = tokens.list_tokens(org)
    if not found:
        click.echo(f"Organization {org!r} has no API token.")
        return
    for token in found:
        used = f"{token.last_used_at:%Y-%m-%d %H:%M} UTC" if token.last_used_at else "never"
        state = (
            f"revoked {token.revoked_at:%Y-%m-%d %H:%M} UTC" if token.revoked_at else "active"
        )
        click.echo(
            f"{token.id:>5}  {token.name}  ({tokens.TOKEN_PREFIX}{token.prefix}_...)  "
            f"created {token.created_at:%Y-%m-%d %H:%M} UTC by {token.created_by or 'unknown'}, "
            f"last used {used}, {state}"
        )


@tokens_cli.command("list")
@ORG_OPTION
@with_appcontext
def tokens_list_command(org: str | None) -> None:
    """List the organization's tokens (revoked ones too)."""
    _list_tokens(_org(org))


@tokens_cli.command("create")
@click.argument("name")
@ORG_OPTION
@ACTOR_OPTION
@with_appcontext
def tokens_create_command(name: str, org: str | None, actor_name: str) -> None:
    """Create a token named NAME and print it (once: it is stored hashed)."""
    org = _org(org)
    try:
        token, plaintext = tokens.create_token(org, name, actor_name)
    except ValueError as exc:
        raise click.UsageError(f"{exc}.") from None
    click.echo(
        f"Created API token {token.id} {token.name!r} for organization {org!r}. "
        "Copy it now: it is not shown again.",
        err=True,
    )
    click.echo(plaintext)


@tokens_cli.command("revoke")
@click.argument("token_id", type=int)
@ORG_OPTION
@with_appcontext
def tokens_revoke_command(token_id: int, org: str | None) -> None:
    """Revoke token TOKEN_ID: requests with it are refused from now on."""
    org = _org(org)
    if not tokens.revoke_token(org, token_id):
        raise CommandError(
            f"Organization {org!r} has no active API token {token_id}.", EXIT_REFUSED
        )
    click.echo(f"Revoked API token {token_id}.")


# -- runs ------------------------------------------------------------------------------------


@csvdirectory_cli.command("runs")
@ORG_OPTION
@click.option(
    "--status", type=click.Choice([s.name.lower() for s in RunStatus]), default=None,
    help="Only runs with this status.",
)
@click.option("--limit", default=20, show_default=True, help="How many runs to list.")
@with_appcontext
def runs_command(org: str | None, status: str | None, limit: int) -> None:
    """List the newest import runs."""
    org = _org(org)
    found, total = runs.list_runs(
        org, status=RunStatus[status.upper()] if status else None, per_page=limit
    )
    if not found:
        which = " with that status" if status else ""
        click.echo(f"Organization {org!r} has no import run{which}.")
        return
    for run in found:
        changes = "-" if run.change_count is None else str(run.change_count)
        click.echo(
            f"{run.id}  {run.created_at:%Y-%m-%d %H:%M} UTC  {run.channel:9}  "
            f"{changes:>7} change(s)  {run.status_label}"
        )
    if total > len(found):
        click.echo(f"... {total - len(found)} older run(s) not shown (--limit N).")


@csvdirectory_cli.command("show")
@click.argument("run_id")
@ORG_OPTION
@click.option("--changes", "show", default=20, show_default=True, help="How many changes to list.")
@click.option("--errors", "show_errors", default=20, show_default=True,
              help="How many row errors to list.")
@with_appcontext
def show_command(run_id: str, org: str | None, show: int, show_errors: int) -> None:
    """Show run RUN_ID: status, files, counts, errors and its planned changes."""
    org = _org(org)
    with _operator_errors(org):
        run = runs.get_run(org, run_id)
        click.echo(f"Run {run.id}: {run.status_label}")
        click.echo(
            f"  uploaded {run.created_at:%Y-%m-%d %H:%M} UTC via {run.channel} by "
            f"{run.uploaded_by_name or 'unknown'}"
        )
        for name, size, rows in (
            (run.users_filename, run.users_size, run.users_rows),
            (run.employees_filename, run.employees_size, run.employees_rows),
        ):
            counted = "" if rows is None else f", {rows} row(s)"
            click.echo(f"  {name}: {size} bytes{counted}")
        if run.decided_at is not None:
            click.echo(f"  decided {run.decided_at:%Y-%m-%d %H:%M} UTC")
        if run.finished_at is not None:
            click.echo(f"  finished {run.finished_at:%Y-%m-%d %H:%M} UTC")
        if run.notice:
            click.echo(f"  notice: {run.notice}")
        if run.error_reason:
            click.echo(f"  reason: {run.error_reason}")
        if run.error_count:
            errors = runs.row_errors(run)
            click.echo(f"  {run.error_count} row error(s):")
            for error in errors[:show_errors]:
                click.echo(f"    {error}")
            if run.error_count > show_errors:
                click.echo(f"    ... and {run.error_count - show_errors} more (--errors N)")
        if run.change_count is not None:
            threshold = "" if run.threshold is None else f" (threshold {run.threshold})"
            click.echo(f"  planned{threshold}:")
            _print_plan(_stored_plan(run), show, option="--changes", indent="  ")
        if run.is_waiting:
            click.echo(
                f"Waiting for approval: flask csvdirectory approve {run.id} "
                f"(or reject {run.id})."
            )


@csvdirectory_cli.command("approve")
@click.argument("run_id")
@ORG_OPTION
@ACTOR_OPTION
@with_appcontext
def approve_command(run_id: str, org: str | None, actor_name: str) -> None:
    """Approve run RUN_ID (Waiting for Approval) and apply it now, in this process."""
    org = _org(org)
    with _operator_errors(org):
        run = runs.get_run(org, run_id)
        _approve_and_apply(org, run, runs.Actor(None, actor_name))
    if run.status == RunStatus.ERROR.value:
        _fail_run(run)
    if run.is_waiting:  # the directory changed since the plan: re-planned, differs
        raise CommandError(
            f"Run {run.id} was not applied: {run.notice or 'its plan changed.'} Review it "
            f"(flask csvdirectory show {run.id}) and approve again.",
            EXIT_REFUSED,
        )
    click.echo(f"Run {run.id}: {run.status_label}.")


@csvdirectory_cli.command("reject")
@click.argument("run_id")
@click.option("--reason", default=None, help="Why (shown in the history and the API).")
@ORG_OPTION
@ACTOR_OPTION
@with_appcontext
def reject_command(run_id: str, reason: str | None, org: str | None, actor_name: str) -> None:
    """Reject run RUN_ID (Waiting for Approval): nothing is applied, and it does not count in
    the sync window."""
    org = _org(org)
    with _operator_errors(org):
        run = runs.reject(org, run_id, runs.Actor(None, actor_name), reason=reason)
    suffix = f" ({run.reject_reason})" if run.reject_reason else ""
    click.echo(f"Run {run.id}: {run.status_label}{suffix}. Nothing was changed.")


def _print_conflicts(run: SyncRun, limit: int) -> None:
    conflicts = runs.load_conflicts(run)
    if not conflicts:
        return
    click.echo(f"{len(conflicts)} conflict(s), changed since the sync and left alone:")
    for conflict in conflicts[:limit]:
        click.echo(
            f"  - {conflict.subject} {conflict.field}: wrote {json.dumps(conflict.wrote)}, "
            f"now {json.dumps(conflict.now)}. {conflict.message}"
        )
    if len(conflicts) > limit:
        click.echo(f"  ... and {len(conflicts) - limit} more")


@csvdirectory_cli.command("revert")
@click.argument("run_id")
@ORG_OPTION
@click.option("--yes", is_flag=True, help="Approve a revert above the threshold without asking.")
@click.option("--as", "actor_name", default="command line", show_default=True,
              help="Name recorded as who started and approved the revert.")
@click.option("--show", default=20, show_default=True, help="How many changes to list.")
@with_appcontext
def revert_command(run_id: str, org: str | None, yes: bool, actor_name: str, show: int) -> None:
    """Revert the applied sync RUN_ID: a new run (channel "revert") that puts back what it
    changed wherever nothing changed since; conflicts are listed and left alone."""
    org = _org(org)
    actor = runs.Actor(id=None, name=actor_name)
    with _operator_errors(org):
        run = runs.start_revert(org, run_id, actor, enqueue=False)
        _run_here(runs.process, run, "Processing")
        if run.status == RunStatus.WAITING.value:
            _print_plan(_stored_plan(run), show)
            _print_conflicts(run, show)
            click.echo(f"{run.change_count} changes exceed the approval threshold.")
            if not yes and not click.confirm("Approve and apply the revert?", default=False):
                runs.reject(org, run.id, actor, reason="Declined at the command line")
                raise CommandError(
                    f"Revert run {run.id} was rejected: nothing was changed.", EXIT_REFUSED
                )
            _approve_and_apply(org, run, actor)
        elif run.status != RunStatus.ERROR.value:
            _print_plan(_stored_plan(run), show)
            _print_conflicts(run, show)
    if run.status == RunStatus.ERROR.value:
        _fail_run(run)
    click.echo(f"Revert run {run.id} of run {run_id}: {run.status_label}.")


@csvdirectory_cli.command("status")
@ORG_OPTION
@with_appcontext
def status_command(org: str | None) -> None:
    """Whether an upload may start now; if not, the open run or when the window reopens."""
    org = _org(org)
    runs.reap_stuck_runs(org)
    blocking = runs.open_run(org)
    opens_at = runs.window_opens_at(org)
    if not runs.get_settings(org).enabled:
        click.echo("The CSV import integration is disabled for this organization.")
    elif blocking is not None:
        click.echo(runs.open_run_message(blocking))
    elif opens_at is not None:
        click.echo(runs.window_message(opens_at))
    else:
        click.echo("Uploads are open.")


@csvdirectory_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's).")
@with_appcontext
def worker_command(burst: bool, name: str | None) -> None:
    """Run an RQ worker for the sync jobs, inside this app (with RQ's scheduler, which runs
    the delayed retries of jobs hit by a transient fault)."""
    state = get_state()
    if state.runner.mode != "rq":
        raise CommandError(
            "CSVDIRECTORY_JOBS_MODE is not 'rq', so no worker is needed: jobs run in the web "
            "process.",
            EXIT_REFUSED,
        )
    grace = state.config["HEARTBEAT_GRACE"].total_seconds()
    worker = state.runner.make_worker(name=name, grace_seconds=grace)
    worker.end_dead_runs()  # also releases every connection: none may cross the fork
    worker.work(burst=burst, with_scheduler=True)


@csvdirectory_cli.command("create-tables")
@with_appcontext
def create_tables_command() -> None:
    """Create the extension's tables, or upgrade them to the newest revision."""
    get_state().extension.create_all(current_app)
    click.echo("flask-csvdirectory tables are ready.")


@csvdirectory_cli.group("db")
def db_cli() -> None:
    """The extension's own tables: Alembic migrations with their own version table."""


@db_cli.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade_command(revision: str) -> None:
    """Upgrade the extension's tables to REVISION (default: the newest).

    A database created by 0.1.0 (tables without a version table) is recognised and upgraded.
    """
    from . import migrations

    engine = get_state().db.engine
    before = migrations.current_revision(engine)
    after = migrations.upgrade(engine, revision)
    if before == after:
        click.echo(f"The flask-csvdirectory tables are already at revision {after}.")
    else:
        click.echo(
            f"Upgraded the flask-csvdirectory tables from revision {before or 'none'} to {after}."
        )


@db_cli.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade_command(revision: str) -> None:
    """Downgrade the extension's tables to REVISION ("base" drops them, with their data)."""
    from . import migrations

    after = migrations.downgrade(get_state().db.engine, revision)
    click.echo(f"The flask-csvdirectory tables are now at revision {after or 'base (none)'}.")


@db_cli.command("current")
@with_appcontext
def db_current_command() -> None:
    """Print the revision the extension's tables are at, and the newest one."""
    from . import migrations

    current = migrations.current_revision(get_state().db.engine)
    head = migrations.head_revision()
    state = "up to date" if current == head else "run 'flask csvdirectory db upgrade'"
    click.echo(f"Current revision: {current or 'none'}; newest: {head} ({state}).")


@db_cli.command("stamp")
@click.argument("revision", default="head")
@with_appcontext
def db_stamp_command(revision: str) -> None:
    """Record REVISION as current without changing any table (tables made some other way)."""
    from . import migrations

    migrations.stamp(get_state().db.engine, revision)
    click.echo(f"Marked the flask-csvdirectory tables as revision {revision}.")


@csvdirectory_cli.command("rotate-keys")
@with_appcontext
def rotate_keys_command() -> None:
    """Re-encrypt every stored file with the first key of CSVDIRECTORY_ENCRYPTION_KEYS."""
    state = get_state()
    count = state.store.rotate(state.session)
    state.session.commit()
    click.echo(f"Re-encrypted {count} stored file(s).")


@csvdirectory_cli.command("purge")
@click.option(
    "--older-than-days",
    type=click.IntRange(min=0),
    default=None,
    help="Retention in days (default: CSVDIRECTORY_FILE_RETENTION).",
)
@click.option("--org", default=None, help="Only this organization (default: every one).")
@with_appcontext
def purge_command(older_than_days: int | None, org: str | None) -> None:
    """Purge the stored files, change sets and before-values of runs finished longer ago than
    the retention period. A purged sync can no longer be reverted."""
    state = get_state()
    retention = (
        timedelta(days=older_than_days)
        if older_than_days is not None
        else state.config["FILE_RETENTION"]
    )
    count = state.store.purge(state.session, utcnow() - retention, org=org)
    state.session.commit()
    click.echo(
        f"Purged {count} stored file(s) of runs finished more than {retention.days} day(s) ago."
    )


@csvdirectory_cli.command("reap")
@with_appcontext
def reap_command() -> None:
    """End runs whose job died (stale heartbeat) as Error while processing."""
    click.echo(f"{runs.reap_stuck_runs()} dead run(s) marked Error while processing.")
