"""Safeguards end to end on both stacks: each case of the issue is refused or held with a message
naming the file, line, column or the people affected, and nothing is half-applied."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from example_app.models import Team, User, db
from flask_csvdirectory import runs, tokens
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.formats import employees_format
from flask_csvdirectory.models import RunStatus, SyncRun

from .conftest import ADMIN
from .factories import EMPLOYEE_HEADER, employees_csv, to_csv, users_csv

pytestmark = [
    pytest.mark.safeguards,
    pytest.mark.settings(CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0)),
]

ORG = "default"
API = "/api/csv-directory/v1"
PREFIX = "/settings/integrations/csv-import"
ADA = {"email": "admin@example.com", "name": "Ada Admin", "role": "Admin", "teams": "*"}
MAX = {"email": "manager@example.com", "name": "Max Manager", "role": "Manager",
       "teams": "Headquarters"}
BOB = {"email": "bob@example.com", "name": "Bob Boss", "role": "Admin", "teams": "*"}


# -- a directory to protect -------------------------------------------------------------------


def seed_people(app: Flask, count: int, *, bob: bool = False) -> None:
    """Besides the seeded admin (Ada) and manager (Max): ``count`` people person0.. in teams
    "Team 0".. with title Analyst, and optionally a second admin, Bob."""
    with app.app_context():
        teams = {}
        for n in range(count):
            name = f"Team {n % 7}"
            teams.setdefault(name, Team(name=name))
            db.session.add(
                User(
                    email=f"person{n}@example.com", employee_id=f"E{n:04d}",
                    first_name=f"First{n}", last_name=f"Last{n}", title="Analyst",
                    team=teams[name],
                )
            )
        if bob:
            hq = db.session.scalar(select(Team).where(Team.name == "Headquarters"))
            boss = User(email="bob@example.com", first_name="Bob", last_name="Boss",
                        title="CTO", team=hq, role="admin", sees_all_teams=True)
            boss.set_password("bob")
            db.session.add(boss)
        db.session.commit()


def bob_actor(app: Flask) -> runs.Actor:
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.email == "bob@example.com"))
        assert bob is not None
        return runs.Actor(id=str(bob.id), name="Bob Boss")


def employee_rows(numbers: range | list[int]) -> list[dict[str, str]]:
    return [
        {"email": f"person{n}@example.com", "employee_id": f"E{n:04d}",
         "first_name": f"First{n}", "last_name": f"Last{n}", "team": f"Team {n % 7}",
         "title": "Analyst"}
        for n in numbers
    ]


def kept_rows(bob: bool = False) -> list[dict[str, str]]:
    """Employees.csv rows that keep Ada and Max (and Bob) as they are."""
    rows = [
        {"email": "admin@example.com", "first_name": "Ada", "last_name": "Admin",
         "team": "Headquarters", "title": "IT administrator"},
        {"email": "manager@example.com", "first_name": "Max", "last_name": "Manager",
         "team": "Headquarters", "title": "Team lead"},
    ]
    if bob:
        rows.append({"email": "bob@example.com", "first_name": "Bob", "last_name": "Boss",
                     "team": "Headquarters", "title": "CTO"})
    return rows


def directory(app: Flask) -> list[tuple[Any, ...]]:
    with app.app_context():
        db.session.expire_all()
        return [
            (u.email, u.employee_id, u.first_name, u.last_name, u.title,
             u.team.name if u.team else None, u.active, u.role, u.sees_all_teams)
            for u in db.session.scalars(select(User).order_by(User.id))
        ]


def start(app: Flask, users: bytes, employees: bytes, actor: runs.Actor = ADMIN) -> SyncRun:
    with app.app_context():
        run = runs.start_run(
            ORG, runs.Upload("Users.csv", users), runs.Upload("Employees.csv", employees), actor
        )
        run_id = run.id
    return reload(app, run_id)


def reload(app: Flask, run_id: str) -> SyncRun:
    with app.app_context():
        db.session.expire_all()
        run = db.session.get(SyncRun, run_id)
        assert run is not None
        db.session.expunge(run)
        return run


def error_messages(app: Flask, run: SyncRun) -> list[tuple[str, int, str | None, str]]:
    with app.app_context():
        fresh = db.session.get(SyncRun, run.id)
        return [(e.file, e.line, e.column, e.message) for e in runs.row_errors(fresh)]


def api_headers(app: Flask) -> dict[str, str]:
    with app.app_context():
        _token, plaintext = tokens.create_token(ORG, "safeguards", "Ada Admin")
    return {"Authorization": f"Bearer {plaintext}"}


def login(client: FlaskClient, email: str = "admin@example.com", password: str = "admin") -> None:
    response = client.post("/login", data={"email": email, "password": password})
    assert response.status_code == 302, response.text


def set_settings(app: Flask, **values: Any) -> None:
    with app.app_context():
        runs.update_settings(ORG, ADMIN, **values)


# -- 1. the truncated HR export that locked out the uploading admin ----------------------------


def truncated_export() -> tuple[bytes, bytes]:
    """51 active people; the cut export keeps 36: Ada (Admin) and 14 others are missing from
    both files; Bob stays Admin."""
    users = users_csv([BOB, MAX])
    employees = employees_csv(kept_rows(bob=True)[1:] + employee_rows(range(34)))
    return users, employees


def test_a_truncated_export_cannot_take_the_uploaders_admin_access(app: Flask, stack: str) -> None:
    seed_people(app, 48, bob=True)  # 48 + Ada, Max, Bob = 51 active
    set_settings(app, approval_threshold=20)
    before = directory(app)
    users, employees = truncated_export()
    run = start(app, users, employees)
    assert run.status == RunStatus.ERROR.value
    assert run.error_reason is not None
    assert "your own Admin access (admin@example.com" in run.error_reason
    assert "another admin must upload them" in run.error_reason
    assert [r["guard"] for r in run.guard_reasons if r["verdict"] == "refuse"] == [
        "uploader_loses_admin"
    ]
    assert directory(app) == before  # nothing applied

    # the same files from another admin wait for approval, naming who is affected
    run = start(app, users, employees, bob_actor(app))
    assert run.status == RunStatus.WAITING.value
    # 15 deactivations and Ada's revocation: under the threshold of 20, held anyway
    assert run.change_count == run.structural_change_count == 16
    reasons = {r["guard"]: r for r in run.guard_reasons}
    assert set(reasons) == {"admin_loses_access", "mass_removal"}
    assert reasons["admin_loses_access"]["message"] == (
        "1 admin would lose Admin access: admin@example.com (deactivated and Admin access "
        "revoked)."
    )
    mass = reasons["mass_removal"]
    assert mass["message"].startswith("Employees.csv lists 36 people; the directory has 51 active.")
    assert "15 of 51 active people (29 %)" in mass["message"]
    assert mass["people_count"] == 15 and "admin@example.com" in mass["people"]
    assert "person47@example.com" in mass["people"]
    assert directory(app) == before

    # the API shows the reasons and both counts
    client = app.test_client()
    body = client.get(f"{API}/imports/{run.id}", headers=api_headers(app)).get_json()
    assert body["status"] == "waiting"
    assert body["change_count"] == 16 and body["structural_change_count"] == 16
    assert [r["guard"] for r in body["guard_reasons"]] == ["admin_loses_access", "mass_removal"]
    assert body["guard_reasons"][1]["people_count"] == 15

    # and the run page shows them
    login(client, "bob@example.com", "bob")
    html = client.get(f"{PREFIX}/runs/{run.id}").text
    assert 'id="csvd-guards"' in html and "Why this run waits for approval" in html
    assert "Employees.csv lists 36 people; the directory has 51 active." in html


# -- 2. the untouched Employees.csv template ------------------------------------------------


def test_the_untouched_employees_template_is_an_error(app: Flask, stack: str) -> None:
    seed_people(app, 28)  # a 30-person company
    before = directory(app)
    run = start(app, users_csv([ADA, MAX]), employees_format().template())
    assert run.status == RunStatus.ERROR.value
    assert error_messages(app, run) == [
        ("Employees.csv", 2, "email",
         "this is the template's example row; replace it with your data")
    ]
    assert directory(app) == before


# -- 3. identifiers that cannot be spoofed --------------------------------------------------


@pytest.mark.parametrize("character", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"])
def test_an_invisible_character_in_an_admin_email_is_an_error(
    app: Flask, stack: str, character: str
) -> None:
    before = directory(app)
    spoof = {**ADA, "email": "admin@example.com" + character}
    run = start(app, users_csv([spoof, MAX]), employees_csv(kept_rows()))
    assert run.status == RunStatus.ERROR.value
    [(file, line, column, message)] = error_messages(app, run)
    assert (file, line, column) == ("Users.csv", 2, "email")
    assert f"U+{ord(character):04X}" in message and "position 18" in message
    assert directory(app) == before


def test_a_cyrillic_lookalike_letter_is_an_error(app: Flask, stack: str) -> None:
    before = directory(app)
    spoof = {**ADA, "email": "\u0430dmin@example.com"}
    run = start(app, users_csv([spoof, MAX]), employees_csv(kept_rows()))
    assert run.status == RunStatus.ERROR.value
    [(file, line, column, message)] = error_messages(app, run)
    assert (file, line, column) == ("Users.csv", 2, "email")
    assert "U+0430" in message and "Cyrillic and Latin" in message
    assert directory(app) == before


def test_an_all_cyrillic_lookalike_of_an_existing_email_names_both(app: Flask, stack: str) -> None:
    with app.app_context():
        hq = db.session.scalar(select(Team).where(Team.name == "Headquarters"))
        db.session.add(User(email="cae@example.com", first_name="Cora", last_name="Ames",
                            team=hq))
        db.session.commit()
    before = directory(app)
    lookalike = "\u0441\u0430\u0435@example.com"  # Cyrillic с а е: one script, not mixed
    rows = kept_rows() + [
        {"email": "cae@example.com", "first_name": "Cora", "last_name": "Ames",
         "team": "Headquarters"},
        {"email": lookalike, "first_name": "Cora", "last_name": "Ames", "team": "Headquarters"},
    ]
    run = start(app, users_csv([ADA, MAX]), employees_csv(rows))
    assert run.status == RunStatus.ERROR.value
    [(file, line, column, message)] = error_messages(app, run)
    assert (file, line, column) == ("Employees.csv", 5, "email")
    assert "looks like cae@example.com (the email of Cora Ames, an existing person)" in message
    assert "U+0441" in message
    assert directory(app) == before


def test_names_and_titles_are_nfc_and_control_characters_refused(app: Flask, stack: str) -> None:
    rows = kept_rows() + [{"email": "zoe@example.com", "first_name": "Zoe\u0308",
                           "last_name": "Lee", "team": "Headquarters", "title": "Chef"}]
    run = start(app, users_csv([ADA, MAX]), employees_csv(rows))
    assert run.status == RunStatus.AUTO_APPROVED.value
    assert ("zoe@example.com", None, "Zo\u00eb", "Lee", "Chef", "Headquarters", True,
            "employee", False) in directory(app)
    before = directory(app)
    rows[-1]["title"] = "Chef\u202e"  # a bidirectional override
    run = start(app, users_csv([ADA, MAX]), employees_csv(rows))
    assert run.status == RunStatus.ERROR.value
    [(file, line, column, message)] = error_messages(app, run)
    assert (file, line, column) == ("Employees.csv", 4, "title") and "U+202E" in message
    assert directory(app) == before


# -- 4. a file cut inside its last record ------------------------------------------------------


def test_a_file_cut_inside_its_last_cell_waits_naming_the_counts(app: Flask, stack: str) -> None:
    seed_people(app, 48)  # 50 active
    set_settings(app, approval_threshold=50)
    before = directory(app)
    employees = employees_csv(kept_rows() + employee_rows(range(6)))
    employees = employees.rstrip(b"\r\n")[: -len("alyst")]  # "...,Team 5,An", no final newline
    assert employees.endswith(b",Team 5,An")
    run = start(app, users_csv([ADA, MAX]), employees)
    assert run.status == RunStatus.WAITING.value
    [reason] = run.guard_reasons
    assert reason["guard"] == "mass_removal"
    assert reason["message"].startswith(
        "Employees.csv lists 8 people; the directory has 50 active."
    )
    assert reason["people_count"] == 42
    assert directory(app) == before


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (b"person5@example.com,E0005,Fir", "after 3 of its 6 cells"),
        (b'person5@example.com,E0005,First5,Last5,Team 5,"Anal', "inside a quoted cell"),
    ],
)
def test_a_last_record_cut_short_is_a_truncation_error(
    app: Flask, stack: str, tail: bytes, expected: str
) -> None:
    employees = employees_csv(kept_rows() + employee_rows(range(5))) + tail
    run = start(app, users_csv([ADA, MAX]), employees)
    assert run.status == RunStatus.ERROR.value
    [(file, line, column, message)] = error_messages(app, run)
    assert (file, line, column) == ("Employees.csv", 9, None)
    assert message.startswith("the file looks truncated") and expected in message


# -- 5. lengths from the host's schema ---------------------------------------------------------


def test_lengths_are_the_hosts_and_dry_run_and_import_agree(app: Flask, stack: str) -> None:
    with app.app_context():
        limits = get_state().adapter.field_limits()
    assert limits["title"].max_length == 200 and limits["external_id"].max_length == 100
    assert limits["email"].max_length == 320 and limits["team"].max_length == 200
    long_email = "a" * 60 + "." + "b" * 60 + "@" + "c" * 220 + ".com"  # 345 characters
    rows = kept_rows() + [
        {"email": long_email, "first_name": "Long", "last_name": "Mail", "team": "Ops"},
        {"email": "t@example.com", "first_name": "Long", "last_name": "Title", "team": "Ops",
         "title": "T" * 250},
    ]
    employees = employees_csv(rows)
    headers = api_headers(app)
    client = app.test_client()
    dry = client.post(
        f"{API}/imports?dry_run=true", headers=headers, content_type="multipart/form-data",
        data={"users": (io.BytesIO(users_csv([ADA, MAX])), "Users.csv"),
              "employees": (io.BytesIO(employees), "Employees.csv")},
    )
    assert dry.status_code == 400, dry.text
    dry_errors = [(e["file"], e["line"], e["column"], e["message"])
                  for e in dry.get_json()["error"]["details"]["errors"]]
    before = directory(app)
    run = start(app, users_csv([ADA, MAX]), employees)
    assert run.status == RunStatus.ERROR.value
    assert error_messages(app, run) == dry_errors
    [(_, line1, column1, message1), (_, line2, column2, message2)] = dry_errors
    assert (line1, column1) == (4, "email") and "too long" in message1
    assert (line2, column2) == (5, "title")
    assert message2 == "is 250 characters long; at most 200 are allowed"
    assert directory(app) == before


# -- 6. cosmetic edits do not count ------------------------------------------------------------


def test_title_only_edits_are_applied_but_do_not_count(app: Flask, stack: str) -> None:
    seed_people(app, 6)
    set_settings(app, approval_threshold=5)
    rows = kept_rows() + employee_rows(range(6))
    for row in rows[2:]:
        row["title"] = "Senior Analyst"
    run = start(app, users_csv([ADA, MAX]), employees_csv(rows))
    assert run.status == RunStatus.AUTO_APPROVED.value
    assert run.change_count == 6 and run.structural_change_count == 0
    assert {t for (_e, _i, _f, _l, t, *_rest) in directory(app)[2:]} == {"Senior Analyst"}
    body = app.test_client().get(f"{API}/imports/{run.id}", headers=api_headers(app)).get_json()
    assert body["change_count"] == 6 and body["structural_change_count"] == 0
    assert body["guard_reasons"] == []


def test_structural_changes_count_toward_the_threshold(app: Flask, stack: str) -> None:
    seed_people(app, 6)
    set_settings(app, approval_threshold=5)
    rows = kept_rows() + employee_rows(range(6))
    for row in rows[2:]:
        row["team"] = "Moved"
    run = start(app, users_csv([ADA, MAX]), employees_csv(rows))
    assert run.status == RunStatus.WAITING.value
    assert run.structural_change_count == 7  # 6 moves + 1 team created
    assert run.guard_reasons == []


# -- 2 again: every admin guard ------------------------------------------------------------


def test_demoting_an_admin_waits_and_names_them(app: Flask, stack: str) -> None:
    seed_people(app, 0, bob=True)
    before = directory(app)
    users = users_csv([{**ADA, "role": "Manager", "teams": "Headquarters"}, BOB, MAX])
    run = start(app, users, employees_csv(kept_rows(bob=True)), bob_actor(app))
    assert run.status == RunStatus.WAITING.value
    [reason] = run.guard_reasons
    assert reason["guard"] == "admin_loses_access"
    assert reason["message"] == (
        "1 admin would lose Admin access: admin@example.com (demoted to Manager)."
    )
    assert directory(app) == before


def test_removing_every_current_admin_waits_for_a_handover(app: Flask, stack: str) -> None:
    before = directory(app)
    carol = {"email": "carol@example.com", "name": "Carol New", "role": "Admin", "teams": "*"}
    client = app.test_client()
    response = client.post(
        f"{API}/imports", headers=api_headers(app), content_type="multipart/form-data",
        data={"users": (io.BytesIO(users_csv([carol, MAX])), "Users.csv"),
              "employees": (io.BytesIO(employees_csv(kept_rows())), "Employees.csv")},
    )
    assert response.status_code == 202, response.text
    run = reload(app, response.get_json()["id"])
    assert run.status == RunStatus.WAITING.value  # a token is not an admin: held, not refused
    reasons = {r["guard"]: r["message"] for r in run.guard_reasons}
    assert set(reasons) == {"admin_continuity", "admin_loses_access"}
    assert "No current admin would keep Admin access" in reasons["admin_continuity"]
    assert "admin@example.com" in reasons["admin_continuity"]
    assert "The new admins would be: carol@example.com." in reasons["admin_continuity"]
    assert directory(app) == before
    with app.app_context():  # a person decides, and then it applies
        runs.approve(ORG, run.id, ADMIN)
    assert reload(app, run.id).status == RunStatus.APPROVED.value
    assert ("carol@example.com", None, "Carol", "New", "", None, True, "admin", True) in directory(
        app
    )


def test_guard_settings_can_be_turned_off_and_are_shown_in_the_api(app: Flask, stack: str) -> None:
    seed_people(app, 30)
    headers = api_headers(app)
    client = app.test_client()
    assert client.get(f"{API}/settings", headers=headers).get_json() == {
        "enabled": True, "approval_threshold": 50, "approval_percent": None,
        "guard_removal_percent": 10.0, "guard_removal_people": 25,
        "scim_enabled": False, "scim_hard_delete": False,
    }
    login(client)
    response = client.post(f"{PREFIX}/", data={
        "enabled": "1", "approval_threshold": "50", "approval_percent": "",
        "guard_removal_percent": "", "guard_removal_people": "",
    })
    assert response.status_code == 303
    body = client.get(f"{API}/settings", headers=headers).get_json()
    assert body["guard_removal_percent"] is None and body["guard_removal_people"] is None
    run = start(app, users_csv([ADA, MAX]), employees_csv(kept_rows() + employee_rows(range(20))))
    assert run.status == RunStatus.AUTO_APPROVED.value  # 10 of 32 removed; no limit set
    bad = client.post(f"{PREFIX}/", data={
        "enabled": "1", "approval_threshold": "50", "guard_removal_percent": "120",
        "guard_removal_people": "-1",
    })
    assert bad.status_code == 400
    assert "Enter a percentage between 0 and 100" in bad.text
    assert "Enter a whole number of 0 or more, or leave it blank" in bad.text


def test_a_dry_run_says_what_the_guards_would_do(app: Flask, stack: str) -> None:
    seed_people(app, 30)
    client = app.test_client()
    response = client.post(
        f"{API}/imports?dry_run=true", headers=api_headers(app),
        content_type="multipart/form-data",
        data={"users": (io.BytesIO(users_csv([ADA, MAX])), "Users.csv"),
              "employees": (io.BytesIO(employees_csv(kept_rows() + employee_rows(range(10)))),
                            "Employees.csv")},
    )
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["would_wait_for_approval"] is True and body["would_be_refused"] is False
    assert body["structural_change_count"] == 20
    [reason] = body["guard_reasons"]
    assert reason["guard"] == "mass_removal" and reason["people_count"] == 20


# -- 6 again: pre-filled templates -----------------------------------------------------------


def test_prefilled_templates_re_import_as_a_no_op(app: Flask, stack: str) -> None:
    seed_people(app, 12, bob=True)
    with app.app_context():  # variety: a scoped manager, an inactive person, odd values
        people = {u.email: u for u in db.session.scalars(select(User))}
        teams = {t.name: t for t in db.session.scalars(select(Team))}
        people["person1@example.com"].role = "manager"
        people["person1@example.com"].scoped_teams = [teams["Team 1"], teams["Team 2"]]
        people["person2@example.com"].active = False
        people["person3@example.com"].title = 'Head of "R&D", Europe'
        people["person4@example.com"].employee_id = None
        people["person5@example.com"].first_name = "Zo\u00eb"
        db.session.commit()
    before = directory(app)
    headers = api_headers(app)
    client = app.test_client()
    users = client.get(f"{API}/templates/prefilled/users.csv", headers=headers)
    employees = client.get(f"{API}/templates/prefilled/employees.csv", headers=headers)
    assert users.status_code == 200 and employees.status_code == 200
    assert users.data.splitlines()[0] == b"email,name,role,teams"
    assert employees.data.splitlines()[0] == ",".join(EMPLOYEE_HEADER).encode()
    assert b"person2@example.com" not in employees.data  # inactive people stay inactive
    assert b"person1@example.com,First1 Last1,Manager,Team 1;Team 2" in users.data

    # the dashboard offers the same files
    login(client)
    assert client.get(f"{PREFIX}/templates/prefilled/Users.csv").data == users.data
    assert client.get(f"{PREFIX}/templates/prefilled/Employees.csv").data == employees.data
    assert "Pre-filled templates" in client.get(f"{PREFIX}/templates").text

    dry = client.post(
        f"{API}/imports?dry_run=true", headers=headers, content_type="multipart/form-data",
        data={"users": (io.BytesIO(users.data), "Users.csv"),
              "employees": (io.BytesIO(employees.data), "Employees.csv")},
    ).get_json()
    assert dry["change_count"] == 0 and dry["guard_reasons"] == []
    run = start(app, users.data, employees.data)
    assert run.status == RunStatus.AUTO_APPROVED.value and run.change_count == 0
    assert directory(app) == before


def test_an_unknown_prefilled_template_is_not_found(app: Flask) -> None:
    client = app.test_client()
    login(client)
    assert client.get(f"{PREFIX}/templates/prefilled/Other.csv").status_code == 404


def test_factories_header_is_the_employees_format() -> None:
    assert to_csv(EMPLOYEE_HEADER, []).decode().strip() == ",".join(employees_format().names)


def test_a_revert_goes_through_the_same_guards(app: Flask, stack: str) -> None:
    seed_people(app, 4)
    before = directory(app)
    first = start(app, users_csv([ADA, MAX]),
                  employees_csv(kept_rows() + employee_rows(range(4)) + employee_rows(
                      range(100, 106))))
    assert first.status == RunStatus.AUTO_APPROVED.value  # 6 people created: nothing removed
    with app.app_context():
        undo_id = runs.start_revert(ORG, first.id, ADMIN).id
    undo = reload(app, undo_id)
    # the revert deactivates the 6 people the first run created: 6 of 12 active
    assert undo.status == RunStatus.WAITING.value
    [reason] = undo.guard_reasons
    assert reason["guard"] == "mass_removal" and reason["people_count"] == 6
    assert "person100@example.com" in reason["people"]
    assert not reason["message"].startswith("Employees.csv")  # a revert has no file
    with app.app_context():
        runs.approve(ORG, undo_id, ADMIN)
    assert [row for row in directory(app) if row[6]] == [row for row in before if row[6]]
