"""``flask csvdirectory ...``: sync from the shell, run a worker, maintain the store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from . import runs
from .changes import ChangeKind, ChangeSet
from .errors import CSVDirectoryError, FileValidationError
from .extension import get_state
from .models import Channel, RunStatus, SyncRun, utcnow


@click.group("csvdirectory")
def csvdirectory_cli() -> None:
    """Directory integration by CSV import."""


def _print_plan(changeset: ChangeSet, limit: int) -> None:
    click.echo(f"{changeset.count} change(s), {changeset.structural_count} structural:")
    for kind, count in changeset.counts().items():
        if count:
            click.echo(f"  {ChangeKind(kind).label}: {count}")
    for change in changeset.changes[:limit]:
        before = json.dumps(change.before) if change.before else ""
        after = json.dumps(change.after) if change.after else ""
        click.echo(f"  - {change.kind.value:22} {change.subject}  {before} -> {after}".rstrip())
    if changeset.count > limit:
        click.echo(f"  ... and {changeset.count - limit} more (--show N to list more)")


@csvdirectory_cli.command("sync")
@click.argument("users", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("employees", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing, record no run.")
@click.option("--org", default=None, help="Organization key (default: the default one).")
@click.option("--yes", is_flag=True,
              help="Approve a plan above the threshold without asking (never a plan held by a "
              "safeguard).")
@click.option("--as", "actor_name", default="command line", show_default=True,
              help="Name recorded as uploader and approver.")
@click.option("--show", default=20, show_default=True, help="How many changes to list.")
@with_appcontext
def sync_command(
    users: Path, employees: Path, dry_run: bool, org: str | None, yes: bool, actor_name: str,
    show: int,
) -> None:
    """Validate USERS and EMPLOYEES, print the plan, and apply it (one run, channel "cli")."""
    state = get_state()
    org = org or state.config["DEFAULT_ORGANIZATION"]
    users_upload = runs.Upload(users.name, users.read_bytes())
    employees_upload = runs.Upload(employees.name, employees.read_bytes())
    actor = runs.Actor(id=None, name=actor_name)
    try:
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
        with click.progressbar(length=1, label="Processing", show_pos=True) as bar:
            runs.process(run.id, worker="cli", progress=_bar_progress(bar))
        state.session.refresh(run)
        if run.status == RunStatus.ERROR.value:
            for error in runs.row_errors(run):
                click.echo(str(error), err=True)
            raise click.ClickException(run.error_reason or "The run failed.")
        if run.status == RunStatus.WAITING.value:
            changeset = runs.load_changeset(run)
            _print_plan(changeset, show)
            reasons = runs.guard_reasons(run)
            for reason in reasons:
                click.echo(f"Safeguard: {reason.message}")
            if reasons and yes:
                raise click.ClickException(
                    f"Run {run.id} waits for approval: the safeguards above need a person to "
                    "approve it (--yes does not), on the dashboard, the API or this command "
                    "without --yes. Nothing was changed."
                )
            if not reasons:
                click.echo(
                    f"{changeset.structural_count} structural changes exceed the approval "
                    "threshold."
                )
            if not yes and not click.confirm("Approve and apply them?", default=False):
                runs.reject(org, run.id, actor)
                raise click.ClickException("Rejected: nothing was changed.")
            runs.approve(org, run.id, actor, enqueue=False)
            with click.progressbar(length=1, label="Applying", show_pos=True) as bar:
                runs.apply_approved(run.id, worker="cli", progress=_bar_progress(bar))
            state.session.refresh(run)
        else:
            _print_plan(runs.load_changeset(run), show)
    except FileValidationError as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        raise click.ClickException(f"{exc.error_count} error(s); nothing was changed.") from None
    except CSVDirectoryError as exc:
        raise click.ClickException(str(exc)) from None
    if run.status == RunStatus.ERROR.value:
        raise click.ClickException(run.error_reason or "The run failed.")
    click.echo(f"Run {run.id}: {run.status_label}.")


def _bar_progress(bar):  # type: ignore[no-untyped-def]
    def update(done: int, total: int) -> None:
        bar.length = max(total, 1)
        bar.update(done - bar.pos)

    return update


def _org_option(org: str | None) -> str:
    return org or get_state().config["DEFAULT_ORGANIZATION"]


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
@click.option("--org", default=None, help="Organization key (default: the default one).")
@click.option("--yes", is_flag=True, help="Approve a revert above the threshold without asking.")
@click.option("--as", "actor_name", default="command line", show_default=True,
              help="Name recorded as who started and approved the revert.")
@click.option("--show", default=20, show_default=True, help="How many changes to list.")
@with_appcontext
def revert_command(run_id: str, org: str | None, yes: bool, actor_name: str, show: int) -> None:
    """Revert the applied sync RUN_ID: a new run (channel "revert") that puts back what it
    changed wherever nothing changed since; conflicts are listed and left alone."""
    state = get_state()
    org = _org_option(org)
    actor = runs.Actor(id=None, name=actor_name)
    try:
        run = runs.start_revert(org, run_id, actor, enqueue=False)
        runs.process(run.id, worker="cli")
        state.session.refresh(run)
        if run.status == RunStatus.WAITING.value:
            _print_plan(runs.load_changeset(run), show)
            _print_conflicts(run, show)
            click.echo(f"{run.change_count} changes exceed the approval threshold.")
            if not yes and not click.confirm("Approve and apply the revert?", default=False):
                runs.reject(org, run.id, actor, reason="Declined at the command line")
                raise click.ClickException("Rejected: nothing was changed.")
            runs.approve(org, run.id, actor, enqueue=False)
            runs.apply_approved(run.id, worker="cli")
            state.session.refresh(run)
        elif run.status != RunStatus.ERROR.value:
            _print_plan(runs.load_changeset(run), show)
            _print_conflicts(run, show)
    except CSVDirectoryError as exc:
        raise click.ClickException(str(getattr(exc, "description", None) or exc)) from None
    if run.status == RunStatus.ERROR.value:
        raise click.ClickException(run.error_reason or "The revert failed.")
    click.echo(f"Revert run {run.id} of run {run_id}: {run.status_label}.")


@csvdirectory_cli.command("approve")
@click.argument("run_id")
@click.option("--org", default=None, help="Organization key (default: the default one).")
@click.option("--as", "actor_name", default="command line", show_default=True,
              help="Name recorded as approver.")
@with_appcontext
def approve_command(run_id: str, org: str | None, actor_name: str) -> None:
    """Approve the run RUN_ID Waiting for Approval and apply it."""
    state = get_state()
    org = _org_option(org)
    try:
        run = runs.approve(org, run_id, runs.Actor(id=None, name=actor_name), enqueue=False)
        runs.apply_approved(run.id, worker="cli")
    except CSVDirectoryError as exc:
        raise click.ClickException(str(getattr(exc, "description", None) or exc)) from None
    state.session.refresh(run)
    if run.status == RunStatus.ERROR.value:
        raise click.ClickException(run.error_reason or "The run failed.")
    click.echo(f"Run {run.id}: {run.status_label}.")


@csvdirectory_cli.command("reject")
@click.argument("run_id")
@click.option("--reason", default=None, help="Why (shown in the history and the API).")
@click.option("--org", default=None, help="Organization key (default: the default one).")
@click.option("--as", "actor_name", default="command line", show_default=True,
              help="Name recorded as who rejected.")
@with_appcontext
def reject_command(run_id: str, reason: str | None, org: str | None, actor_name: str) -> None:
    """Reject the run RUN_ID Waiting for Approval: nothing is applied, and it does not count in
    the sync window."""
    try:
        run = runs.reject(
            _org_option(org), run_id, runs.Actor(id=None, name=actor_name), reason=reason
        )
    except CSVDirectoryError as exc:
        raise click.ClickException(str(getattr(exc, "description", None) or exc)) from None
    suffix = f" ({run.reject_reason})" if run.reject_reason else ""
    click.echo(f"Run {run.id}: {run.status_label}{suffix}. Nothing was applied.")


@csvdirectory_cli.command("status")
@click.option("--org", default=None, help="Organization key (default: the default one).")
@with_appcontext
def status_command(org: str | None) -> None:
    """Whether an upload may start now; if not, the open run or when the window reopens."""
    org = _org_option(org)
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
        raise click.ClickException("CSVDIRECTORY_JOBS_MODE is not 'rq': no worker is needed.")
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
