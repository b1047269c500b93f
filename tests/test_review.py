"""The review that leads with risk, search, downloads and the pre-flight check (issue 13)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_csvdirectory import review, runs
from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet
from flask_csvdirectory.errors import FileValidationError
from flask_csvdirectory.pipeline import build_plan
from flask_csvdirectory.records import AccessRecord, DirectorySnapshot, PersonRecord, Role
from flask_csvdirectory.rows import RowError, errors_to_csv

from .conftest import ADMIN
from .factories import employee, employees_csv, to_csv, users_csv
from .test_dashboard import (
    PREFIX,
    login,
    pair,
    people_employees,
    people_users,
    run_count,
    subjects,
    upload_run,
)


@pytest.fixture(autouse=True)
def _push_request_context() -> None:
    """Each request gets its own app context (see test_dashboard)."""


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))


# -- the pure part ---------------------------------------------------------------------------


def snapshot() -> DirectorySnapshot:
    return DirectorySnapshot.build(
        [
            PersonRecord("1", "ada@x.com", "Ada", "Admin", team="Ops"),
            PersonRecord("2", "bo@x.com", "Bo", "Boss", team="Sales"),
            PersonRecord("3", "cy@x.com", "Cy", "Clerk", team="Sales"),
        ],
        [],
        [
            AccessRecord("ada@x.com", Role.ADMIN),
            AccessRecord("bo@x.com", Role.ADMIN),
            AccessRecord("cy@x.com", Role.MANAGER, ("Ops", "Sales")),
        ],
    )


def changes() -> ChangeSet:
    return ChangeSet.of(
        [
            Change(ChangeKind.EMPLOYEE_CREATED, "new@x.com", None, None,
                   {"email": "new@x.com", "first_name": "Nu", "last_name": "One",
                    "team": "Support", "title": "", "external_id": None, "extra": {}}),
            Change(ChangeKind.EMPLOYEE_MOVED, "cy@x.com", "3", {"team": "Sales"},
                   {"team": "Support"}),
            Change(ChangeKind.EMPLOYEE_DEACTIVATED, "bo@x.com", "2", {"active": True},
                   {"active": False}),
            Change(ChangeKind.ACCESS_CHANGED, "cy@x.com", "3",
                   {"role": "Manager", "teams": ["Ops", "Sales"]},
                   {"role": "Manager", "teams": ["Sales"]}),
            Change(ChangeKind.ACCESS_CHANGED, "ada@x.com", "1",
                   {"role": "Admin", "teams": ["*"]}, {"role": "Manager", "teams": ["Ops"]}),
            Change(ChangeKind.ACCESS_REVOKED, "bo@x.com", "2",
                   {"role": "Admin", "teams": ["*"]}),
        ]
    )


def test_people_are_described_with_name_team_and_role_before_and_after() -> None:
    people = review.describe_people(changes(), snapshot())
    bo = people.by_email["bo@x.com"]
    assert (bo.name, bo.team, bo.role, bo.active_after) == ("Bo Boss", "Sales", "Admin → none",
                                                           False)
    cy = people.by_email["cy@x.com"]
    assert (cy.team, cy.role) == ("Sales → Support", "Manager")
    assert people.by_email["new@x.com"].name == "Nu One"
    assert review.People.from_bytes(people.to_bytes()) == people


def test_destructive_kinds_come_first_and_name_the_admins_losing_access() -> None:
    changeset = changes()
    people = review.describe_people(changeset, snapshot())
    summary = review.summarize(changeset, people)
    assert [(row.value, row.count, row.destructive) for row in summary.rows] == [
        ("employee_deactivated", 1, True),
        ("access_revoked", 1, True),
        ("access_reduced", 2, True),
        ("employee_created", 1, False),
        ("employee_moved", 1, False),
    ]
    assert [who.email for who in summary.admins_affected] == ["bo@x.com", "ada@x.com"]
    assert review.confirmation(summary) == (
        "Apply these 6 changes to the directory?\n"
        "This includes: Employees deactivated: 1; Dashboard access revoked: 1; "
        "Dashboard access reduced: 2.\n"
        "Admins losing access: Bo Boss (bo@x.com), Ada Admin (ada@x.com)."
    )
    ordered = review.in_review_order(changeset)
    assert [c.kind for c in ordered[:4]] == [
        ChangeKind.EMPLOYEE_DEACTIVATED, ChangeKind.ACCESS_REVOKED,
        ChangeKind.ACCESS_CHANGED, ChangeKind.ACCESS_CHANGED]


def test_a_wider_scope_is_not_destructive() -> None:
    wider = Change(ChangeKind.ACCESS_CHANGED, "m@x.com", None,
                   {"role": "Manager", "teams": ["Ops"]}, {"role": "Manager", "teams": ["*"]})
    promoted = Change(ChangeKind.ACCESS_CHANGED, "m@x.com", None,
                      {"role": "Manager", "teams": ["Ops"]}, {"role": "Admin", "teams": ["*"]})
    assert not review.is_destructive(wider) and not review.is_destructive(promoted)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("support", {"new@x.com", "cy@x.com"}),  # team after: created into it, moved into it
        ("SALES", {"bo@x.com", "cy@x.com"}),  # team before: deactivated in it, moved out of it
        ("boss", {"bo@x.com"}),  # a name, for a kind whose change holds only "active"
        ("ada@", {"ada@x.com"}),
        ("ops", {"ada@x.com", "cy@x.com"}),  # a scope's teams, before or after
    ],
)
def test_search_covers_email_name_and_team_before_and_after(
    query: str, expected: set[str]
) -> None:
    changeset = changes()
    people = review.describe_people(changeset, snapshot())
    found = {c.subject for c in review.select(changeset, people, query=query)}
    assert found == expected


def test_every_csv_cell_is_formula_safe_header_and_column_name_included() -> None:
    error = RowError("Users.csv", 1, '=HYPERLINK("http://evil")', None, "unknown column")
    rows = rows_of(errors_to_csv([error]))
    assert rows[1][2] == '\'=HYPERLINK("http://evil")'
    nasty = Change(ChangeKind.EMPLOYEE_CREATED, "+x@x.com", None, None,
                   {"email": "+x@x.com", "first_name": "=1+1", "last_name": "@SUM(A1)",
                    "team": "-Team", "title": "", "external_id": None, "extra": {}})
    changeset = ChangeSet([nasty])
    people = review.describe_people(changeset, snapshot())
    for data in (review.changes_csv(changeset.changes, people),
                 review.result_csv(changeset.changes, people)):
        for row in rows_of(data):
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_every_error_of_both_files_is_found_in_one_pass() -> None:
    """A bad email in Employees.csv no longer hides an unknown team in a manager's scope."""
    users = users_csv([
        {"email": "admin@example.com", "name": "Ada", "role": "Admin", "teams": "*"},
        {"email": "m@example.com", "name": "Mo", "role": "Manager", "teams": "Nowhere; Sales"},
    ])
    employees = employees_csv([employee(1, email="not-an-email", team="Sales"), employee(2)])
    with pytest.raises(FileValidationError) as raised:
        build_plan(users, employees, DirectorySnapshot.build([], [], []))
    found = {(e.file, e.column, e.value) for e in raised.value.errors}
    assert ("Employees.csv", "email", "not-an-email") in found
    assert ("Users.csv", "teams", "Nowhere") in found
    # "Sales" is only on the invalid row's team... and still known to the scope check
    assert ("Users.csv", "teams", "Sales") not in found
    assert raised.value.error_count == 2


def test_a_file_missing_a_column_does_not_cause_noise_in_the_other() -> None:
    users = users_csv([{"email": "m@example.com", "name": "Mo", "role": "Manager",
                        "teams": "Sales"}, {"email": "a@example.com", "role": "Admin"}])
    employees = to_csv(["email", "first_name", "last_name"], [["a@example.com", "A", "B"]])
    with pytest.raises(FileValidationError) as raised:
        build_plan(users, employees, DirectorySnapshot.build([], [], []))
    assert {e.file for e in raised.value.errors} == {"Employees.csv"}


# -- through the dashboard -------------------------------------------------------------------


def seed_people(client: FlaskClient) -> None:
    """Apply a first sync: person1..4 in Sales/Support, person3 an Admin, person4 a Manager."""
    users = [*people_users(),
             {"email": "person3@example.com", "name": "P3", "role": "Admin", "teams": "*"},
             {"email": "person4@example.com", "name": "P4", "role": "Manager",
              "teams": "Sales"}]
    data = pair([employee(1), employee(2, team="Support"), employee(3), employee(4)])
    data["users"] = (io.BytesIO(users_csv(users)), "Users.csv")
    upload_run(client, data)


@pytest.mark.settings(CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0))
def test_a_held_run_leads_with_its_destructive_changes(app: Flask, client: FlaskClient) -> None:
    login(client)
    seed_people(client)
    with app.app_context():
        runs.update_settings("default", ADMIN, approval_threshold=3)
    # person1 and person3 leave; person3 (an Admin) loses access; person4 moves to Support
    users = [*people_users(),
             {"email": "person4@example.com", "name": "P4", "role": "Manager",
              "teams": "Sales"}]
    data = pair([employee(2, team="Support"), employee(4, team="Support"), employee(5)])
    data["users"] = (io.BytesIO(users_csv(users)), "Users.csv")
    run_id = upload_run(client, data)
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert '<dd id="csvd-status">Waiting for Approval</dd>' in html
    kinds = re.findall(r'<tr data-kind="(\w+)"( class="csvd-destructive")?>', html)
    assert kinds[:2] == [("employee_deactivated", ' class="csvd-destructive"'),
                         ("access_revoked", ' class="csvd-destructive"')]
    assert all(not flag for _, flag in kinds[2:])
    risk = re.search(r'<div class="csvd-callout csvd-callout--danger" id="csvd-risk">(.*?)</div>',
                     html, re.S).group(1)
    assert "employees deactivated: <strong>2</strong>" in risk
    assert "Admins losing access (1):</strong>\n    First3 Last3 (person3@example.com)" in risk
    confirm = re.search(r'data-confirm="(Apply these[^"]*)"', html).group(1)
    assert confirm.startswith("Apply these 5 changes to the directory?")
    assert "Employees deactivated: 2; Dashboard access revoked: 1" in confirm
    assert "Admins losing access: First3 Last3 (person3@example.com)." in confirm
    # the first table is the deactivations, with name, team and role
    first = re.search(r'<table class="csvd-table csvd-review csvd-review--destructive csvd-cards" '
                      r'data-kind="(\w+)"', html).group(1)
    assert first == "employee_deactivated"
    assert subjects(html, "employee_deactivated") == ["person1@example.com",
                                                      "person3@example.com"]
    assert re.search(r'First3 Last3</span><br><span class="csvd-email">person3@example.com'
                     r'</span></th>\s*<td data-label="Team">Sales</td>\s*'
                     r'<td data-label="Role">Admin → none</td>', html)

    # search by team finds people moved into it and out of it, and people leaving it
    support = client.get(f"{PREFIX}/runs/{run_id}?q=support").text
    assert subjects(support, "employee_moved") == ["person4@example.com"]
    sales = client.get(f"{PREFIX}/runs/{run_id}?q=Sales").text
    assert subjects(sales, "employee_moved") == ["person4@example.com"]
    assert subjects(sales, "employee_deactivated") == ["person1@example.com",
                                                       "person3@example.com"]
    by_name = client.get(f"{PREFIX}/runs/{run_id}?q=first1 last1").text
    assert subjects(by_name, "employee_deactivated") == ["person1@example.com"]

    # the change set downloads, destructive first; no result before it is applied
    download = client.get(f"{PREFIX}/runs/{run_id}/changes.csv")
    assert download.headers["Content-Disposition"] == \
        f"attachment; filename=changes-{run_id[:8]}.csv"
    rows = rows_of(download.data)
    assert rows[0] == list(review.CHANGE_COLUMNS)
    assert rows[1][:6] == ["Employees deactivated", "yes", "person1@example.com",
                           "First1 Last1", "Sales", "Sales"]
    assert client.get(f"{PREFIX}/runs/{run_id}/result.csv").status_code == 404

    client.post(f"{PREFIX}/runs/{run_id}/approve")
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert re.search(r'<p><strong>5 changes applied in \d+\.\d s\.</strong></p>', html)
    assert '<a href="/">See the directory</a>' in html
    result = rows_of(client.get(f"{PREFIX}/runs/{run_id}/result.csv").data)
    assert result[0] == list(review.RESULT_COLUMNS)
    by_email = {row[0]: row for row in result[1:]}
    assert by_email["person3@example.com"][1:6] == ["First3 Last3", "Sales", "no", "", ""]
    assert by_email["person4@example.com"][2] == "Support"


def test_the_review_hides_fields_that_do_not_change(app: Flask, client: FlaskClient) -> None:
    """Role: Manager -> Manager is not a change: only the teams are listed."""
    login(client)
    users = [people_users()[0], {**people_users()[1], "teams": "Headquarters; Sales"}]
    data = pair([employee(n) for n in range(1, 60)])
    data["users"] = (io.BytesIO(users_csv(users)), "Users.csv")
    run_id = upload_run(client, data)
    html = client.get(f"{PREFIX}/runs/{run_id}?kind=access_changed").text
    changed = re.search(r'csvd-review csvd-cards" data-kind="access_changed".*?</table>', html,
                        re.S).group(0)
    assert "Teams: <del" in changed and "Role:" not in changed


def test_the_pre_flight_check_plans_without_a_run_or_the_window(
    app: Flask, client: FlaskClient
) -> None:
    login(client)
    files = pair([employee(1), employee(2)])
    checked = client.post(f"{PREFIX}/upload/check", data=files,
                          content_type="multipart/form-data")
    assert checked.status_code == 200
    html = checked.text
    assert "Check passed: 3 changes" in html
    assert "This sync would be applied at once" in html
    assert run_count(app) == 0
    with app.app_context():
        assert runs.window_opens_at("default") is None
    big = client.post(f"{PREFIX}/upload/check", data=pair([employee(n) for n in range(60)]),
                      content_type="multipart/form-data")
    assert "This sync would wait for approval" in big.text
    # then Start sync: the window was untouched, so it starts
    upload_run(client, pair([employee(1), employee(2)]))
    assert run_count(app) == 1


def test_the_pre_flight_check_lists_every_error_of_both_files(
    app: Flask, client: FlaskClient
) -> None:
    login(client)
    users = [*people_users(), {"email": "m@example.com", "name": "Mo", "role": "Manager",
                               "teams": "Nowhere"}]
    data = pair([employee(1, email="bad@"), employee(2, team="")])
    data["users"] = (io.BytesIO(users_csv(users)), "Users.csv")
    checked = client.post(f"{PREFIX}/upload/check", data=data,
                          content_type="multipart/form-data")
    assert checked.status_code == 422
    assert "Check failed: 3 errors" in checked.text
    table = re.search(r'id="csvd-check-errors">(.*?)</table>', checked.text, re.S).group(1)
    files = re.findall(r"<tr><td>(Users\.csv|Employees\.csv)</td>", table)
    assert sorted(files) == ["Employees.csv", "Employees.csv", "Users.csv"]
    missing = client.post(f"{PREFIX}/upload/check",
                          data={"users": (io.BytesIO(users_csv(users)), "Users.csv")},
                          content_type="multipart/form-data")
    assert missing.status_code == 400
    assert "Both files are required together" in missing.text
    assert run_count(app) == 0


def test_people_employees_still_match() -> None:
    """The helpers this module borrows keep the seeded people unchanged."""
    assert [row["email"] for row in people_employees()] == ["admin@example.com",
                                                           "manager@example.com"]
    assert ADMIN.name == "Ada Admin"
