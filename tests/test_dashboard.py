"""The admin dashboard pages through the example platform (Flask test client, inline jobs)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from example_app.models import User, db
from flask_csvdirectory import ExtraColumn, runs, tokens
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import RunStatus, SyncRun

from .conftest import ADMIN
from .factories import employee, employees_csv, to_csv, users_csv

PREFIX = "/settings/integrations/csv-import"
PAGES = ["/", "/templates", "/upload", "/runs"]


@pytest.fixture(autouse=True)
def _push_request_context() -> None:
    """Overrides pytest-flask's: each request gets its own app context, as in production.

    pytest-flask keeps one request context for the whole test, so ``g`` (Flask-Login's cached
    user) and the database session would leak from one request into the next.
    """


# -- helpers ---------------------------------------------------------------------------------------


def login(client: FlaskClient, email: str = "admin@example.com", password: str = "admin") -> None:
    response = client.post("/login", data={"email": email, "password": password})
    assert response.status_code == 302, response.text


def people_users() -> list[dict[str, str]]:
    """Users.csv rows that keep the seeded admin and manager as they are."""
    return [
        {"email": "admin@example.com", "name": "Ada Admin", "role": "Admin", "teams": "*"},
        {"email": "manager@example.com", "name": "Max Manager", "role": "Manager",
         "teams": "Headquarters"},
    ]


def people_employees() -> list[dict[str, str]]:
    """Employees.csv rows that keep the seeded admin and manager as they are."""
    return [
        {"email": "admin@example.com", "employee_id": "", "first_name": "Ada",
         "last_name": "Admin", "team": "Headquarters", "title": "IT administrator"},
        {"email": "manager@example.com", "employee_id": "", "first_name": "Max",
         "last_name": "Manager", "team": "Headquarters", "title": "Team lead"},
    ]


def pair(extra_employees: list[dict[str, str]], **overrides: dict[str, str]) -> dict[str, Any]:
    """Form data with both files: the seeded people plus ``extra_employees``."""
    rows = people_employees()
    for row in rows:
        row.update(overrides.get(row["email"], {}))
    return {
        "users": (io.BytesIO(users_csv(people_users())), "Users.csv"),
        "employees": (io.BytesIO(employees_csv(rows + extra_employees)), "Employees.csv"),
    }


def upload(client: FlaskClient, data: dict[str, Any]) -> Any:
    return client.post(f"{PREFIX}/upload", data=data, content_type="multipart/form-data")


def upload_run(client: FlaskClient, data: dict[str, Any]) -> str:
    """Upload, follow to the run page, and return the run id."""
    response = upload(client, data)
    assert response.status_code == 303, response.text
    match = re.search(r"/runs/([0-9a-f]{32})$", response.location)
    assert match, response.location
    return match.group(1)


def person(app: Flask, email: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        if user is not None:
            db.session.expunge(user)
        return user


def run_count(app: Flask) -> int:
    with app.app_context():
        return runs.list_runs("default")[1]


def subjects(html: str, kind: str) -> list[str]:
    """The subjects listed in the review table of ``kind``."""
    table = re.search(rf'<table class="csvd-table csvd-review[^"]*" data-kind="{kind}"[^>]*>'
                      r'(.*?)</table>', html, re.S)
    return re.findall(r'data-subject="([^"]+)"', table.group(1)) if table else []


def flashes(html: str) -> list[str]:
    return re.findall(r'<p class="flash" role="status">(.*?)</p>', html, re.S)


# -- access ----------------------------------------------------------------------------------------


def test_every_page_renders_for_an_admin(client: FlaskClient) -> None:
    login(client)
    for page in PAGES:
        response = client.get(PREFIX + page)
        assert response.status_code == 200, page
        assert "csvdirectory.css" in response.text
        assert 'aria-label="CSV Import"' in response.text
    assert client.get("/settings/").status_code == 200  # the host links to csvdirectory.settings
    assert f'href="{PREFIX}/"' in client.get("/settings/").text


def test_a_manager_is_refused_and_anonymous_users_go_to_login(
    app: Flask, client: FlaskClient
) -> None:
    run_id = upload_run_as_admin(app)
    targets = [*PAGES, f"/runs/{run_id}", f"/runs/{run_id}/errors.csv",
               f"/runs/{run_id}/changes.csv", f"/runs/{run_id}/result.csv", "/templates/Users.csv"]
    for page in targets:
        response = client.get(PREFIX + page)
        assert response.status_code == 302, page
        assert response.location.startswith("/login"), page
    # the status endpoint a page polls answers in JSON, never with a redirect to the login page
    status = client.get(f"{PREFIX}/runs/{run_id}/status")
    assert (status.status_code, status.json["error"]) == (401, "signed_out")
    login(client, "manager@example.com", "manager")
    for page in targets:
        assert client.get(PREFIX + page).status_code == 403, page
    status = client.get(f"{PREFIX}/runs/{run_id}/status")
    assert (status.status_code, status.json["error"]) == (403, "forbidden")
    for action in ["/", "/tokens", "/upload", "/upload/check", f"/runs/{run_id}/approve",
                   f"/runs/{run_id}/reject"]:
        assert client.post(PREFIX + action, data={"name": "x"}).status_code == 403, action
    assert run_count(app) == 1


def upload_run_as_admin(app: Flask) -> str:
    client = app.test_client()
    login(client)
    return upload_run(client, pair([employee(1)]))


def test_an_unknown_run_is_not_found(client: FlaskClient) -> None:
    login(client)
    response = client.get(f"{PREFIX}/runs/{'0' * 32}")
    assert response.status_code == 404
    assert "No such import run." in response.text
    assert client.get(f"{PREFIX}/runs/{'0' * 32}/status").status_code == 404


# -- templates -------------------------------------------------------------------------------------


def test_templates_download_with_exact_headers(app: Flask, client: FlaskClient) -> None:
    get_state(app).adapter.extra_columns = (ExtraColumn("cost_center", example="CC-42"),)
    login(client)
    users = client.get(f"{PREFIX}/templates/Users.csv")
    assert users.status_code == 200
    assert users.headers["Content-Disposition"] == "attachment; filename=Users.csv"
    assert users.mimetype == "text/csv"
    assert users.data.decode().splitlines()[0] == "email,name,role,teams"
    employees = client.get(f"{PREFIX}/templates/Employees.csv")
    assert employees.headers["Content-Disposition"] == "attachment; filename=Employees.csv"
    header, example = list(csv.reader(io.StringIO(employees.data.decode())))
    assert header == ["email", "employee_id", "first_name", "last_name", "team", "title",
                      "cost_center"]
    assert example[-1] == "CC-42"
    assert client.get(f"{PREFIX}/templates/Other.csv").status_code == 404
    page = client.get(f"{PREFIX}/templates").text
    assert "<code>cost_center</code>" in page
    assert f'href="{PREFIX}/templates/Employees.csv"' in page


# -- upload ----------------------------------------------------------------------------------------


def test_upload_page_has_both_inputs_each_with_its_template_link(client: FlaskClient) -> None:
    login(client)
    html = client.get(f"{PREFIX}/upload").text
    users_input = html.index('name="users"')
    users_link = html.index(f'href="{PREFIX}/templates/Users.csv"')
    employees_input = html.index('name="employees"')
    employees_link = html.index(f'href="{PREFIX}/templates/Employees.csv"')
    assert users_input < users_link < employees_input < employees_link
    # each link says which template it is (no two links named "Download template")
    assert ">Download the Users.csv template</a>" in html
    assert ">Download the Employees.csv template</a>" in html
    assert "A sync of up to 50 structural changes" in html  # says small runs apply at once
    assert "data-csvd-upload" in html
    assert "<fieldset disabled" not in html


@pytest.mark.parametrize("missing", ["users", "employees"])
def test_a_single_file_is_refused_and_nothing_starts(
    app: Flask, client: FlaskClient, missing: str
) -> None:
    login(client)
    data = pair([employee(1)])
    del data[missing]
    response = upload(client, data)
    assert response.status_code == 303
    assert response.location.endswith("/upload")
    page = client.get(response.location).text
    name = "Users.csv" if missing == "users" else "Employees.csv"
    assert f"Both files are required together; missing or empty: {name}" in page
    assert run_count(app) == 0


def test_an_empty_file_is_refused(app: Flask, client: FlaskClient) -> None:
    login(client)
    data = pair([employee(1)])
    data["users"] = (io.BytesIO(b""), "Users.csv")
    response = upload(client, data)
    assert "missing or empty: Users.csv" in client.get(response.location).text
    assert run_count(app) == 0


def test_a_small_upload_is_auto_approved_and_changes_the_directory(
    app: Flask, client: FlaskClient
) -> None:
    login(client)
    assert person(app, "person1@example.com") is None
    run_id = upload_run(client, pair([employee(1), employee(2)]))
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert "Both files were uploaded; processing started." in html
    assert '<dd id="csvd-status">Auto-Approved</dd>' in html
    assert "Changes applied" in html
    assert subjects(html, "employee_created") == ["person1@example.com", "person2@example.com"]
    assert subjects(html, "team_created") == ["Sales"]
    assert "data-csvd-status-url" not in html  # finished: no live progress
    created = person(app, "person2@example.com")
    assert created is not None and created.active and created.title == "Associate"


def test_files_matching_the_directory_change_nothing(client: FlaskClient) -> None:
    login(client)
    run_id = upload_run(client, pair([]))
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert "Auto-Approved" in html
    assert "there is nothing to change" in html


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=2)
def test_a_large_upload_waits_and_the_review_lists_the_exact_changes(
    app: Flask, client: FlaskClient
) -> None:
    login(client)
    data = pair(
        [employee(1), employee(2), employee(3, team="Support")],
        **{"manager@example.com": {"title": "Head of Sales"}},
    )
    run_id = upload_run(client, data)
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert '<dd id="csvd-status">Waiting for Approval</dd>' in html
    assert "more structural changes than the approval threshold of 2" in html
    counts = dict(re.findall(r'<tr data-kind="(\w+)"[^>]*>\s*<th scope="row">.*?</th>\s*'
                             r'<td class="csvd-num">(\d+)</td>', html, re.S))
    assert counts == {"team_created": "2", "employee_created": "3", "employee_updated": "1"}
    assert "Teams created" in html and "Employees updated" in html
    assert subjects(html, "team_created") == ["Sales", "Support"]
    assert subjects(html, "employee_created") == [
        "person1@example.com", "person2@example.com", "person3@example.com"]
    assert subjects(html, "employee_updated") == ["manager@example.com"]
    assert re.search(r'Title: <del class="csvd-before">Team lead</del>.*?'
                     r'<ins class="csvd-after">Head of Sales</ins>', html, re.S)
    # each person with name, team and role
    assert re.search(r'<span class="csvd-person">Max Manager</span><br><span class="csvd-email">'
                     r'manager@example.com</span></th>\s*'
                     r'<td data-label="Team">Headquarters</td>\s*'
                     r'<td data-label="Role">Manager</td>',
                     html)
    assert person(app, "person1@example.com") is None  # nothing applied yet

    # filter by kind, then by text
    by_kind = client.get(f"{PREFIX}/runs/{run_id}?kind=employee_created").text
    assert subjects(by_kind, "employee_created") == [
        "person1@example.com", "person2@example.com", "person3@example.com"]
    assert subjects(by_kind, "team_created") == []
    by_text = client.get(f"{PREFIX}/runs/{run_id}?q=PERSON3").text
    assert subjects(by_text, "employee_created") == ["person3@example.com"]
    assert subjects(by_text, "team_created") == []
    assert "Showing 1–1 of 1 change matching the filter, destructive first." in by_text
    nothing = client.get(f"{PREFIX}/runs/{run_id}?kind=team_created&q=person").text
    assert "No change matches the filter." in nothing

    response = client.post(f"{PREFIX}/runs/{run_id}/approve")
    assert response.status_code == 303
    html = client.get(response.location).text
    assert "Approved by Ada Admin." in flashes(html)[0]
    assert '<dd id="csvd-status">Approved by Ada Admin</dd>' in html
    assert person(app, "person3@example.com") is not None
    manager = person(app, "manager@example.com")
    assert manager is not None and manager.title == "Head of Sales"
    history = client.get(f"{PREFIX}/runs").text
    assert "Approved by Ada Admin" in history


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=2)
def test_reject_leaves_the_directory_unchanged(app: Flask, client: FlaskClient) -> None:
    login(client)
    run_id = upload_run(client, pair([employee(n) for n in range(1, 5)]))
    response = client.post(f"{PREFIX}/runs/{run_id}/reject")
    html = client.get(response.location).text
    assert "Rejected by Ada Admin. Nothing was applied to the directory." in html
    assert '<dd id="csvd-status">Rejected by Ada Admin</dd>' in html
    assert person(app, "person1@example.com") is None
    # a decided run cannot be decided again: the blueprint's handler says why
    again = client.post(f"{PREFIX}/runs/{run_id}/approve")
    assert again.status_code == 303 and again.location.endswith(run_id)
    assert "Only a run Waiting for Approval can be approved" in client.get(again.location).text
    assert person(app, "person1@example.com") is None


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=0)
def test_review_is_paginated_server_side(client: FlaskClient) -> None:
    login(client)
    run_id = upload_run(client, pair([employee(n) for n in range(1, 61)]))
    first = client.get(f"{PREFIX}/runs/{run_id}").text
    assert "Showing 1–50 of 61 changes, destructive first." in first
    assert subjects(first, "team_created") == ["Sales"]
    assert len(subjects(first, "employee_created")) == 49
    assert 'aria-current="page" href' in first and "Go to page" in first
    assert f'href="{PREFIX}/runs/{run_id}?page=2#changes"' in first
    second = client.get(f"{PREFIX}/runs/{run_id}?page=2").text
    assert "Showing 51–61 of 61 changes, destructive first." in second
    assert len(subjects(second, "employee_created")) == 11
    listed = subjects(first, "employee_created") + subjects(second, "employee_created")
    assert sorted(listed) == sorted(f"person{n}@example.com" for n in range(1, 61))
    filtered = client.get(f"{PREFIX}/runs/{run_id}?kind=employee_created&page=2").text
    assert "Showing 51–60 of 60 changes matching the filter, destructive first." in filtered
    assert "page=1&amp;kind=employee_created#changes" in filtered
    assert "Showing 51–61 of 61 changes, destructive first." in client.get(
        f"{PREFIX}/runs/{run_id}?page=99").text


def test_the_window_closed_message_says_until_when_and_why(
    app: Flask, client: FlaskClient
) -> None:
    login(client)
    run_id = upload_run(client, pair([employee(1)]))
    html = client.get(f"{PREFIX}/upload").text
    with app.app_context():
        opens_at = runs.window_opens_at("default")
    assert opens_at is not None
    assert f"uploads reopen at {opens_at:%Y-%m-%d %H:%M:%S} UTC." in html
    assert "One synchronization per 12 hours is allowed" in html
    assert f'<time datetime="{opens_at:%Y-%m-%dT%H:%M:%SZ}"' in html  # local time too
    assert f"/runs/{run_id}" in html
    assert "<fieldset>" in html  # Check files stays usable; Start sync is disabled
    assert re.search(r'<button type="submit" class="csvd-button csvd-button--primary" '
                     r'data-csvd-start disabled', html)
    response = upload(client, pair([employee(2)]))
    assert f"uploads reopen at {opens_at:%Y-%m-%d %H:%M:%S} UTC" in client.get(
        response.location
    ).text
    assert run_count(app) == 1


def test_a_disabled_integration_says_so_with_a_link_to_settings(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        runs.update_settings("default", ADMIN, enabled=False)
    login(client)
    html = client.get(f"{PREFIX}/upload").text
    assert "The CSV import integration is disabled." in html
    assert f'<a href="{PREFIX}/">CSV Import settings</a>' in html
    assert "<fieldset disabled>" in html
    response = upload(client, pair([employee(1)]))
    assert "integration is disabled" in client.get(response.location).text
    assert run_count(app) == 0


def test_an_error_run_shows_its_reason_and_row_errors_as_csv(
    app: Flask, client: FlaskClient
) -> None:
    login(client)
    data = pair([employee(1, email="not-an-email"), employee(2, team="")])
    run_id = upload_run(client, data)
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert '<dd id="csvd-status">Error while processing</dd>' in html
    with app.app_context():
        run = runs.get_run("default", run_id)
        reason = run.error_reason
    assert reason and "Employees.csv had 2 errors" in reason
    assert "Employees.csv had 2 errors" in html
    assert "Errors in the files (2)" in html
    assert "<code>not-an-email</code>" in html
    assert "is not a valid email address" in html

    download = client.get(f"{PREFIX}/runs/{run_id}/errors.csv")
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    disposition = download.headers["Content-Disposition"]
    assert disposition == f"attachment; filename=errors-{run_id[:8]}.csv"
    rows = list(csv.reader(io.StringIO(download.data.decode())))
    assert rows[0] == ["file", "line", "column", "value", "message"]
    assert rows[1][:4] == ["Employees.csv", "4", "email", "not-an-email"]
    assert rows[2][:3] == ["Employees.csv", "5", "team"]
    assert len(rows) == 3

    history = client.get(f"{PREFIX}/runs").text
    # the reason is in a disclosure, reachable by keyboard and touch (no hover-only tooltip)
    assert re.search(r'<details class="csvd-reason"><summary>Why<span class="csvd-visually-hidden">'
                     r' this run failed</span></summary><p>Employees.csv had 2 errors', history)
    assert 'title="Employees.csv' not in history
    # an error does not close the window
    assert "Uploads are closed" not in client.get(f"{PREFIX}/upload").text


def test_error_csv_cells_cannot_run_as_formulas(app: Flask, client: FlaskClient) -> None:
    login(client)
    run_id = upload_run(client, pair([employee(1, email="=HYPERLINK(1)")]))
    rows = list(csv.reader(io.StringIO(
        client.get(f"{PREFIX}/runs/{run_id}/errors.csv").data.decode())))
    assert rows[1][3] == "'=HYPERLINK(1)"


# -- history, live status and stuck runs -----------------------------------------------------------


@pytest.mark.settings(CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0), CSVDIRECTORY_RUNS_PER_PAGE=2)
def test_history_lists_runs_newest_first_paginated(client: FlaskClient) -> None:
    login(client)
    ids = [upload_run(client, pair([employee(n) for n in range(1, k + 1)])) for k in (1, 2, 3)]
    first = client.get(f"{PREFIX}/runs").text
    listed = re.findall(r'<tr data-run-id="(\w+)">', first)
    assert listed == [ids[2], ids[1]]
    assert "Showing 1–2 of 3 runs, newest first." in first
    assert "Ada Admin" in first and "Dashboard" in first and "Auto-Approved" in first
    assert "(Employees created: 1)" in first
    second = client.get(f"{PREFIX}/runs?page=2").text
    assert re.findall(r'<tr data-run-id="(\w+)">', second) == [ids[0]]
    assert "(Teams created: 1; Employees created: 1)" in second
    past_the_end = client.get(f"{PREFIX}/runs?page=9").text
    assert re.findall(r'<tr data-run-id="(\w+)">', past_the_end) == [ids[0]]
    only_errors = client.get(f"{PREFIX}/runs?status=error").text
    assert "No runs yet." in only_errors


def test_the_status_endpoint_and_live_progress(app: Flask, client: FlaskClient) -> None:
    login(client)
    with app.app_context():
        run = runs.start_run(
            "default",
            runs.Upload("Users.csv", users_csv(people_users())),
            runs.Upload("Employees.csv", employees_csv(people_employees())),
            ADMIN,
            enqueue=False,
        )
        run_id = run.id
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert f'data-csvd-status-url="{PREFIX}/runs/{run_id}/status"' in html
    assert 'aria-live="polite"' in html
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in html
    status = client.get(f"{PREFIX}/runs/{run_id}/status")
    assert status.headers["Cache-Control"] == "no-store"
    assert status.json == {
        "id": run_id, "status": "File Processing", "status_label": "File Processing",
        "phase": "queued", "phase_label": "Waiting for a worker to pick the run up",
        "finished": False, "waiting": False, "progress": {"done": 0, "total": 0},
        "change_count": None, "outcome": None, "state": "File Processing|open",
    }
    with app.app_context():
        runs.process(run_id)
    assert client.get(f"{PREFIX}/runs/{run_id}/status").json["state"] == "Auto-Approved|finished"


@pytest.mark.settings(CSVDIRECTORY_HEARTBEAT_GRACE=timedelta(0))
def test_history_reaps_stuck_runs(app: Flask, client: FlaskClient) -> None:
    login(client)
    with app.app_context():
        run_id = runs.start_run(
            "default",
            runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv([employee(1)])),
            ADMIN,
            enqueue=False,
        ).id
    html = client.get(f"{PREFIX}/runs").text
    assert "File Processing" not in re.search(r'<tbody>(.*)</tbody>', html, re.S).group(1)
    with app.app_context():
        run = runs.get_run("default", run_id)
        assert run.status == RunStatus.ERROR.value
        assert "nothing was applied; you can upload again now" in (run.error_reason or "")


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=0)
def test_a_drift_notice_is_shown_prominently(app: Flask, client: FlaskClient) -> None:
    login(client)
    run_id = upload_run(client, pair([employee(1)]))
    with app.app_context():
        run = get_state().session.get(SyncRun, run_id)
        run.notice = "The directory changed after this plan was made."
        get_state().session.commit()
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert re.search(r'role="alert" id="csvd-notice"><p><strong>The directory changed after '
                     r"this plan was made.</strong>", html)


# -- settings and tokens ---------------------------------------------------------------------------


def test_settings_save_and_validation(app: Flask, client: FlaskClient) -> None:
    login(client)
    page = client.get(f"{PREFIX}/").text
    assert 'id="enabled" name="enabled" value="1" checked' in page
    bad = client.post(f"{PREFIX}/", data={"enabled": "1", "approval_threshold": "-1",
                                         "approval_percent": "150"})
    assert bad.status_code == 400
    assert '<span class="csvd-field-error" id="approval_threshold-error">Enter a whole number' \
        in bad.text
    assert '<span class="csvd-field-error" id="approval_percent-error">Enter a percentage' \
        in bad.text
    assert 'value="150"' in bad.text  # what was typed is kept
    not_a_number = client.post(f"{PREFIX}/", data={"approval_threshold": "many"})
    assert not_a_number.status_code == 400
    with app.app_context():
        settings = runs.get_settings("default")
        assert (settings.enabled, settings.approval_threshold) == (True, 50)

    good = client.post(f"{PREFIX}/", data={"approval_threshold": "10", "approval_percent": "12.5"})
    assert good.status_code == 303
    assert "CSV import settings saved." in client.get(good.location).text
    with app.app_context():
        settings = runs.get_settings("default")
        assert (settings.enabled, settings.approval_threshold, settings.approval_percent) == (
            False, 10, 12.5)
        assert settings.updated_by == "Ada Admin"
    page = client.get(f"{PREFIX}/").text
    assert 'id="enabled" name="enabled" value="1">' in page
    assert 'value="12.5"' in page
    client.post(f"{PREFIX}/", data={"enabled": "1", "approval_threshold": "10",
                                   "approval_percent": ""})
    with app.app_context():
        assert runs.get_settings("default").approval_percent is None


def test_tokens_create_list_revoke(app: Flask, client: FlaskClient) -> None:
    login(client)
    missing = client.post(f"{PREFIX}/tokens", data={"name": "  "})
    assert missing.status_code == 400
    assert "Give the token a name." in missing.text

    # post-redirect-get: the token is shown once, at the top, by the page the POST redirects to
    created = client.post(f"{PREFIX}/tokens", data={"name": "Nightly HR export"})
    assert created.status_code == 303
    assert created.location == f"{PREFIX}/#csvd-new-token-heading"
    assert "csvd_" not in created.headers.get("Set-Cookie", "")  # encrypted in the session
    shown = client.get(created.location)
    assert shown.headers["Cache-Control"] == "no-store"
    plaintext = re.search(r'id="csvd-new-token"[^>]*value="(csvd_[^"]+)"', shown.text).group(1)
    assert shown.text.index('id="csvd-new-token"') < shown.text.index("csvd-status-heading")
    assert "Copy token" in shown.text and "shown only this once" in shown.text
    with app.app_context():
        assert len(tokens.list_tokens("default")) == 1
    refreshed = client.get(created.location).text  # a refresh neither shows nor creates one
    assert plaintext not in refreshed
    with app.app_context():
        assert len(tokens.list_tokens("default")) == 1
    with app.app_context():
        token = tokens.authenticate(plaintext)
        assert token is not None and token.name == "Nightly HR export"
        token_id, prefix = token.id, token.prefix
    listing = client.get(f"{PREFIX}/").text
    assert plaintext not in listing  # shown once only
    assert "Nightly HR export" in listing and f"csvd_{prefix}_…" in listing
    assert "by Ada Admin" in listing

    revoked = client.post(f"{PREFIX}/tokens/{token_id}/revoke")
    assert revoked.status_code == 303
    page = client.get(revoked.location).text
    assert "The token was revoked" in page
    assert re.search(r'<td>Revoked <time datetime="[0-9T:-]+Z" title="[^"]+" '
                     r'data-csvd-time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time></td>',
                     page)
    assert 'data-confirm="Revoke the token' in listing
    with app.app_context():
        assert tokens.authenticate(plaintext) is None
    again = client.post(f"{PREFIX}/tokens/{token_id}/revoke")
    assert "No such active token." in client.get(again.location).text


# -- CSRF ------------------------------------------------------------------------------------------


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_posts_need_a_csrf_token_even_without_the_hosts_csrf_protect(
    app: Flask, client: FlaskClient
) -> None:
    # behave as a host without CSRFProtect on our pages: only the blueprint's own check is left
    app.extensions["csrf"].exempt(app.blueprints["csvdirectory"])
    login_page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
    client.post("/login", data={"email": "admin@example.com", "password": "admin",
                                "csrf_token": token})
    forged = client.post(f"{PREFIX}/", data={"approval_threshold": "7"},
                         headers={"Referer": f"http://localhost{PREFIX}/"})
    assert forged.status_code == 303
    assert "nothing was changed" in client.get(forged.location).text
    assert client.post(f"{PREFIX}/upload", data=pair([employee(1)]),
                       content_type="multipart/form-data").status_code == 303
    assert run_count(app) == 0
    with app.app_context():
        assert runs.get_settings("default").approval_threshold == 50

    page = client.get(f"{PREFIX}/").text
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    saved = client.post(f"{PREFIX}/", data={"approval_threshold": "7", "enabled": "1",
                                           "csrf_token": form_token})
    assert saved.status_code == 303
    with app.app_context():
        assert runs.get_settings("default").approval_threshold == 7


def test_pages_render_with_a_users_csv_only_listing(client: FlaskClient) -> None:
    """A run whose files list a new manager shows the access table with role and teams."""
    login(client)
    users = to_csv(["email", "name", "role", "teams"], [
        *people_users(),
        {"email": "person1@example.com", "name": "P One", "role": "Manager",
         "teams": "Sales; Support"},
    ])
    data = pair([employee(1), employee(2, team="Support")])
    data["users"] = (io.BytesIO(users), "Users.csv")
    run_id = upload_run(client, data)
    html = client.get(f"{PREFIX}/runs/{run_id}").text
    assert subjects(html, "access_granted") == ["person1@example.com"]
    assert "Gets dashboard access: Manager of Sales, Support" in html
    assert re.search(r'First1 Last1</span><br><span class="csvd-email">person1@example.com'
                     r'</span></th>\s*'
                     r'<td data-label="Team">Sales</td>\s*'
                     r'<td data-label="Role">none → Manager</td>', html)
