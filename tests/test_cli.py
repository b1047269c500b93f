"""``flask csvdirectory ...`` commands."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import func, select

from example_app.models import User, db
from flask_csvdirectory import runs, tokens
from flask_csvdirectory.cli import EXIT_FAILED, EXIT_INVALID_FILES, EXIT_REFUSED
from flask_csvdirectory.models import ApiToken, IntegrationSettings, RunStatus, SyncRun

from .factories import employee, employees_csv, users_csv


def files(tmp_path: Path, employees: bytes) -> list[str]:
    users_path, employees_path = tmp_path / "Users.csv", tmp_path / "Employees.csv"
    users_path.write_bytes(users_csv())
    employees_path.write_bytes(employees)
    return [str(users_path), str(employees_path)]


def run_count() -> int:
    return db.session.scalar(select(func.count()).select_from(SyncRun)) or 0


def test_dry_run_prints_the_plan_and_changes_nothing(app: Flask, tmp_path: Path) -> None:
    result = app.test_cli_runner().invoke(
        args=["csvdirectory", "sync", *files(tmp_path, employees_csv([employee(1)])), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "Employees created: 1" in result.output
    assert "person1@example.com" in result.output
    assert "Dry run: nothing was changed." in result.output
    assert run_count() == 0


def test_sync_applies_and_records_a_cli_run(app: Flask, tmp_path: Path) -> None:
    result = app.test_cli_runner().invoke(
        args=["csvdirectory", "sync", *files(tmp_path, employees_csv([employee(1)]))]
    )
    assert result.exit_code == 0, result.output
    assert "Auto-Approved" in result.output
    run = db.session.scalars(select(SyncRun)).one()
    assert run.channel == "cli"
    assert db.session.scalar(select(User).where(User.email == "person1@example.com"))


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1)
def test_large_plan_asks_and_a_no_rejects(app: Flask, tmp_path: Path) -> None:
    paths = files(tmp_path, employees_csv([employee(n) for n in range(3)]))
    result = app.test_cli_runner().invoke(args=["csvdirectory", "sync", *paths], input="n\n")
    assert result.exit_code == EXIT_REFUSED
    assert "exceed the approval threshold" in result.output
    assert "was rejected: nothing was changed." in result.output
    assert db.session.scalars(select(SyncRun)).one().status == "Rejected"


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1)
def test_large_plan_with_yes_is_approved(app: Flask, tmp_path: Path) -> None:
    paths = files(tmp_path, employees_csv([employee(n) for n in range(3)]))
    result = app.test_cli_runner().invoke(
        args=["csvdirectory", "sync", *paths, "--yes", "--as", "Ops Bot"]
    )
    assert result.exit_code == 0, result.output
    assert "Approved by Ops Bot" in result.output


def test_bad_file_lists_every_error(app: Flask, tmp_path: Path) -> None:
    bad = employees_csv([employee(1, email="nope"), employee(2, team="")])
    result = app.test_cli_runner().invoke(args=["csvdirectory", "sync", *files(tmp_path, bad)])
    assert result.exit_code == EXIT_INVALID_FILES
    assert "Employees.csv, line 2, column 'email'" in result.output
    assert "Employees.csv, line 3, column 'team'" in result.output

    assert "Error while processing" in result.output


#: click < 8.2 mixes stderr into stdout unless told not to; later versions keep both apart
SEPARATE_STDERR = (
    {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
)


def cli(app: Flask, *args: str, input: str | None = None) -> Result:
    """Run ``flask csvdirectory ARGS``; the result's stdout and stderr are kept apart."""
    runner = app.test_cli_runner(**SEPARATE_STDERR)
    return runner.invoke(args=["csvdirectory", *args], input=input)


def settings() -> IntegrationSettings:
    db.session.expire_all()
    return db.session.scalars(select(IntegrationSettings)).one()


# -- refusals are sentences with their own exit code -----------------------------------------


def test_a_disabled_integration_is_refused_in_a_sentence_that_says_how_to_enable(
    app: Flask, tmp_path: Path
) -> None:
    assert cli(app, "settings", "disable").exit_code == 0
    result = cli(app, "sync", *files(tmp_path, employees_csv([employee(1)])))
    assert result.exit_code == EXIT_REFUSED
    assert "409" not in result.stdout + result.stderr
    assert "Conflict" not in result.stdout + result.stderr
    assert "is disabled for organization 'default'" in result.stderr
    assert "flask csvdirectory settings enable --org default" in result.stderr
    assert run_count() == 0


def test_a_closed_window_is_refused_with_when_it_opens(app: Flask, tmp_path: Path) -> None:
    assert cli(app, "sync", *files(tmp_path, employees_csv([employee(1)]))).exit_code == 0
    result = cli(app, "sync", *files(tmp_path, employees_csv([employee(2)])))
    assert result.exit_code == EXIT_REFUSED
    assert "Too Many Requests" not in result.stderr and "429" not in result.stderr
    assert "One synchronization per 12 hours is allowed" in result.stderr
    assert "uploads reopen at" in result.stderr


# -- settings ------------------------------------------------------------------------------


def test_settings_enable_disable_and_threshold(app: Flask) -> None:
    result = cli(app, "settings", "disable", "--as", "Olga Ops")
    assert result.exit_code == 0, result.stdout
    assert result.stdout == "Disabled the CSV import integration of organization 'default'.\n"
    assert settings().enabled is False
    assert settings().updated_by == "Olga Ops"

    result = cli(app, "settings", "set", "--enable", "--threshold", "120", "--percent", "5")
    assert result.exit_code == 0, result.stdout
    assert (settings().enabled, settings().approval_threshold) == (True, 120)
    assert settings().approval_percent == 5
    assert "more than 120 change(s) or more than 5% of the directory" in result.stdout

    result = cli(app, "settings", "set", "--no-percent")
    assert settings().approval_percent is None
    result = cli(app, "settings")
    assert "The CSV import integration of organization 'default' is enabled." in result.stdout
    assert "more than 120 change(s)." in result.stdout

    result = cli(app, "settings", "set", "--removal-percent", "20", "--removal-people", "7")
    assert result.exit_code == 0, result.stderr
    assert (settings().guard_removal_percent, settings().guard_removal_people) == (20, 7)
    assert (
        "The mass-removal safeguard holds a run that would deactivate more than 20% of the "
        "directory or 7 people." in result.stdout
    )
    result = cli(app, "settings", "set", "--no-removal-guard")
    assert (settings().guard_removal_percent, settings().guard_removal_people) == (None, None)
    assert "The mass-removal safeguard is off." in result.stdout
    assert cli(app, "settings", "set", "--no-removal-guard", "--removal-people", "3").exit_code == 2

    assert cli(app, "settings", "set").exit_code == 2  # nothing to change: usage
    assert cli(app, "settings", "set", "--threshold", "-1").exit_code == 2
    assert cli(app, "settings", "set", "--percent", "101").exit_code == 2
    assert cli(app, "settings", "enable", "--org", "acme").exit_code == 0
    assert cli(app, "settings", "show", "--org", "acme").stdout.startswith(
        "The CSV import integration of organization 'acme' is enabled."
    )


# -- tokens --------------------------------------------------------------------------------


def test_tokens_create_list_revoke(app: Flask) -> None:
    result = cli(app, "tokens", "create", "HR system", "--as", "Olga Ops")
    assert result.exit_code == 0, result.stderr
    plaintext = result.stdout.strip()  # only the token on stdout: scripts capture it
    assert plaintext.startswith(tokens.TOKEN_PREFIX)
    assert "Copy it now: it is not shown again." in result.stderr
    token = tokens.authenticate(plaintext)
    assert token is not None and token.name == "HR system" and token.created_by == "Olga Ops"

    listing = cli(app, "tokens", "list").stdout
    assert "HR system" in listing and "active" in listing
    assert plaintext not in listing

    assert cli(app, "tokens", "revoke", str(token.id)).stdout == f"Revoked API token {token.id}.\n"
    assert tokens.authenticate(plaintext) is None
    assert "revoked" in cli(app, "tokens").stdout
    again = cli(app, "tokens", "revoke", str(token.id))
    assert again.exit_code == EXIT_REFUSED
    assert f"has no active API token {token.id}" in again.stderr
    other_org = cli(app, "tokens", "list", "--org", "acme")
    assert other_org.stdout == "Organization 'acme' has no API token.\n"
    assert cli(app, "tokens", "create", "  ").exit_code == 2
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 1


# -- runs: list, show, approve, reject -----------------------------------------------------


def waiting_run(app: Flask, tmp_path: Path, people: int = 3) -> SyncRun:
    with app.test_request_context():
        runs.update_settings("default", runs.Actor(None, "t"), approval_threshold=1)
    paths = files(tmp_path, employees_csv([employee(n) for n in range(people)]))
    run = runs.start_run(
        "default",
        runs.Upload("Users.csv", Path(paths[0]).read_bytes()),
        runs.Upload("Employees.csv", Path(paths[1]).read_bytes()),
        runs.Actor("1", "Ada Admin"),
    )
    db.session.refresh(run)
    assert run.status == RunStatus.WAITING.value
    return run


def test_show_lists_a_waiting_run_and_how_to_decide(app: Flask, tmp_path: Path) -> None:
    run = waiting_run(app, tmp_path)
    result = cli(app, "show", run.id, "--changes", "2")
    assert result.exit_code == 0, result.stdout
    assert result.stdout.startswith(f"Run {run.id}: Waiting for Approval\n")
    assert "Employees created: 3" in result.stdout
    assert "... and 4 more (--changes N to list more)" in result.stdout, result.stdout
    assert f"flask csvdirectory approve {run.id}" in result.stdout
    listing = cli(app, "runs", "--status", "waiting").stdout
    assert run.id in listing and "Waiting for Approval" in listing
    assert cli(app, "runs", "--status", "rejected").stdout == (
        "Organization 'default' has no import run with that status.\n"
    )


def test_approve_applies_and_records_who(app: Flask, tmp_path: Path) -> None:
    run = waiting_run(app, tmp_path)
    result = cli(app, "approve", run.id, "--as", "Olga Ops")
    assert result.exit_code == 0, result.stderr
    assert f"Run {run.id}: Approved by Olga Ops." in result.stdout
    assert db.session.scalar(select(User).where(User.email == "person2@example.com"))
    again = cli(app, "approve", run.id)
    assert again.exit_code == EXIT_REFUSED
    assert "Only a run Waiting for Approval can be approved" in again.stderr


def test_reject_changes_nothing(app: Flask, tmp_path: Path) -> None:
    run = waiting_run(app, tmp_path)
    result = cli(app, "reject", run.id, "--as", "Olga Ops")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"Run {run.id}: Rejected by Olga Ops. Nothing was changed.\n"
    assert db.session.scalar(select(User).where(User.email == "person2@example.com")) is None


def test_unknown_run_is_refused(app: Flask) -> None:
    for command in ("show", "approve", "reject"):
        result = cli(app, command, "0" * 32)
        assert result.exit_code == EXIT_REFUSED
        assert "Organization 'default' has no import run with that id" in result.stderr
        assert "404" not in result.stderr


def test_a_failed_apply_exits_with_failure(
    app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = waiting_run(app, tmp_path)
    adapter = app.extensions["csvdirectory"].adapter

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(adapter, "apply", broken)
    result = cli(app, "approve", run.id)
    assert result.exit_code == EXIT_FAILED
    assert f"Run {run.id} ended in Error while processing" in result.stderr
    assert db.session.scalar(select(User).where(User.email == "person2@example.com")) is None


@pytest.mark.safeguards
def test_yes_does_not_approve_a_run_held_by_a_safeguard(app: Flask, tmp_path: Path) -> None:
    users_path, employees_path = tmp_path / "Users.csv", tmp_path / "Employees.csv"
    users_path.write_bytes(
        users_csv([{"email": "new.admin@example.com", "name": "New Admin", "role": "Admin"}])
    )
    employees_path.write_bytes(employees_csv([employee(1)]))
    paths = [str(users_path), str(employees_path)]
    dry = app.test_cli_runner().invoke(args=["csvdirectory", "sync", *paths, "--dry-run"])
    assert "Safeguard (hold): No current admin would keep Admin access" in dry.output
    result = app.test_cli_runner().invoke(args=["csvdirectory", "sync", *paths, "--yes"])
    assert result.exit_code == EXIT_REFUSED
    assert "Safeguard: 1 admin would lose Admin access: admin@example.com" in result.output
    assert "--yes does not" in result.output
    run = db.session.scalars(select(SyncRun)).one()
    assert run.status == "Waiting for Approval"
    admin = db.session.scalar(select(User).where(User.email == "admin@example.com"))
    assert admin is not None and admin.role == "admin"
