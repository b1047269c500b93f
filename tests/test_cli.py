"""``flask csvdirectory ...`` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from example_app.models import User, db
from flask_csvdirectory.models import SyncRun

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
    assert result.exit_code == 1
    assert "exceed the approval threshold" in result.output
    assert "Rejected" in result.output
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
    assert result.exit_code == 1
    assert "Employees.csv, line 2, column 'email'" in result.output
    assert "Employees.csv, line 3, column 'team'" in result.output


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
    assert result.exit_code == 1
    assert "Safeguard: 1 admin would lose Admin access: admin@example.com" in result.output
    assert "--yes does not" in result.output
    run = db.session.scalars(select(SyncRun)).one()
    assert run.status == "Waiting for Approval"
    admin = db.session.scalar(select(User).where(User.email == "admin@example.com"))
    assert admin is not None and admin.role == "admin"
