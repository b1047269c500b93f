"""The run lifecycle through the JSON API, the dashboard and the CLI: they agree with each other
and with :mod:`flask_csvdirectory.runs`."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from example_app.models import User, db
from flask_csvdirectory import runs
from flask_csvdirectory.cli import EXIT_REFUSED

from .conftest import ADMIN
from .factories import employee, employees_csv, users_csv
from .test_api import API, error_of, files, post_import
from .test_dashboard import PREFIX, login

pytestmark = pytest.mark.lifecycle

ORG = "default"


@pytest.fixture(autouse=True)
def _push_request_context() -> None:
    """One app context per request, as in production (see test_dashboard)."""


@pytest.fixture
def auth(app: Flask) -> dict[str, str]:
    from flask_csvdirectory import tokens

    with app.app_context():
        _token, plaintext = tokens.create_token(ORG, "ci", "Ada Admin")
    return {"Authorization": f"Bearer {plaintext}"}


def applied_run(app: Flask, count: int = 2) -> str:
    with app.app_context():
        run = runs.start_run(
            ORG,
            runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv([employee(n) for n in range(count)])),
            ADMIN,
        )
        return run.id


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1)
def test_api_open_run_refusal_reject_reason_and_status(
    app: Flask, stack: str, client: FlaskClient, auth: dict[str, str]
) -> None:
    waiting = post_import(client, auth).get_json()
    assert waiting["status"] == "waiting"
    refused = error_of(post_import(client, auth), 409, "run_in_progress")
    assert refused["details"]["run_id"] == waiting["id"]
    assert refused["details"]["run"].endswith(f"/imports/{waiting['id']}")
    assert waiting["id"] in refused["message"] and "approve or reject it" in refused["message"]
    status = client.get(f"{API}/status", headers=auth).get_json()
    assert status["uploads_open"] is False and status["open_run"] == waiting["id"]
    assert status["message"] == refused["message"]

    too_long = client.post(
        f"{API}/imports/{waiting['id']}/reject", json={"reason": "x" * 2001}, headers=auth
    )
    error_of(too_long, 422, "validation_error")
    rejected = client.post(
        f"{API}/imports/{waiting['id']}/reject",
        json={"reason": "Sales team is missing from the export"},
        headers=auth,
    ).get_json()
    assert rejected["status_label"] == "Rejected by API token 'ci'"
    assert rejected["reject_reason"] == "Sales team is missing from the export"
    assert rejected["revert"] == {
        "available": False,
        "reason": "Only an applied sync can be reverted; this run ended Rejected by API token "
        "'ci', so it changed nothing.",
    }
    listed = client.get(f"{API}/imports", headers=auth).get_json()["items"]
    assert listed[0]["reject_reason"] == "Sales team is missing from the export"
    # nothing was synchronized: the corrected file goes in at once
    assert client.get(f"{API}/status", headers=auth).get_json()["uploads_open"] is True
    assert post_import(client, auth).status_code == 202


def test_api_and_dashboard_give_the_same_window_message(
    app: Flask, stack: str, client: FlaskClient, auth: dict[str, str]
) -> None:
    first = post_import(client, auth).get_json()
    assert first["timings"]["applied_at"] is not None
    refused = post_import(client, auth)
    error = error_of(refused, 429, "window_closed")
    opens_at = error["details"]["opens_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", opens_at)  # whole seconds
    assert opens_at.replace("T", " ").removesuffix("+00:00") + " UTC" in error["message"]
    status = client.get(f"{API}/status", headers=auth).get_json()
    assert status["message"] == error["message"]
    assert status["window_opens_at"] == opens_at
    login(client)
    page = client.get(f"{PREFIX}/upload").text
    assert html.escape(error["message"]) in page or error["message"] in page
    settings_page = client.get(f"{PREFIX}/").text
    assert error["message"] in html.unescape(settings_page)


@pytest.mark.settings(CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0))
def test_api_revert_and_its_links(
    app: Flask, stack: str, client: FlaskClient, auth: dict[str, str]
) -> None:
    sync = post_import(client, auth, files(count=3)).get_json()
    assert sync["revert"] == {"available": True, "reason": None}
    response = client.post(sync["links"]["revert"], headers=auth)
    assert response.status_code == 202, response.text
    undo = response.get_json()
    assert response.headers["Location"].endswith(f"/imports/{undo['id']}")
    assert (undo["channel"], undo["reverts"]) == ("revert", sync["id"])
    if undo["status"] == "waiting":  # held by a guard like any run (test_safeguards)
        approved = client.post(undo["links"]["approve"], headers=auth)
        assert approved.status_code == 202, approved.text
        undo = approved.get_json()
    assert undo["status"] in ("auto_approved", "approved")
    assert undo["change_counts"]["employee_deactivated"] == 3
    assert undo["conflict_count"] == 0
    original = client.get(sync["links"]["self"], headers=auth).get_json()
    assert original["reverted_by"] == undo["id"]
    assert original["revert"]["available"] is False
    assert f"already reverted by run {undo['id']}" in original["revert"]["reason"]
    again = error_of(client.post(sync["links"]["revert"], headers=auth), 409, "revert_unavailable")
    assert again["message"] == original["revert"]["reason"]
    conflicts = client.get(undo["links"]["conflicts"], headers=auth).get_json()
    assert conflicts == {"run_id": undo["id"], "reverts": sync["id"], "total": 0, "items": []}
    error_of(client.post(f"{API}/imports/{'0' * 32}/revert", headers=auth), 404, "not_found")


@pytest.mark.settings(
    CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0),
    CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=10,
)
def test_dashboard_reject_reason_revert_button_and_conflicts(
    app: Flask, stack: str, client: FlaskClient
) -> None:
    login(client)
    with app.app_context():
        waiting = runs.start_run(
            ORG,
            runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv([employee(n) for n in range(12)])),
            ADMIN,
        ).id
    page = client.get(f"{PREFIX}/runs/{waiting}").text
    assert 'name="reason"' in page and "Revert this sync" not in page
    upload_page = client.get(f"{PREFIX}/upload").text
    assert 'id="csvd-open-run"' in upload_page and waiting in upload_page
    response = client.post(f"{PREFIX}/runs/{waiting}/reject", data={"reason": "Wrong month"})
    assert response.status_code == 303
    history = client.get(f"{PREFIX}/runs").text
    assert "Reason: Wrong month" in history
    assert 'id="csvd-reject-reason">Wrong month<' in client.get(f"{PREFIX}/runs/{waiting}").text

    applied = applied_run(app, count=2)
    with app.app_context():  # from now on every run waits for approval
        runs.update_settings(ORG, ADMIN, approval_threshold=0)
    page = client.get(f"{PREFIX}/runs/{applied}").text
    assert 'id="csvd-revert-button"' in page
    response = client.post(f"{PREFIX}/runs/{applied}/revert")
    assert response.status_code == 303
    revert_id = re.search(r"/runs/([0-9a-f]{32})$", response.location).group(1)
    assert revert_id != applied
    revert_page = client.get(f"{PREFIX}/runs/{revert_id}").text
    assert f'id="csvd-reverts"><a href="{PREFIX}/runs/{applied}"' in revert_page
    # it waits for approval like any run: the original says a revert is in progress
    assert "Revert run" in client.get(f"{PREFIX}/runs/{applied}").text
    # meanwhile someone changes the email of a person the sync created: at approval the revert
    # is re-planned, differs, and waits again, listing the conflict
    with app.app_context():
        person = db.session.scalar(select(User).where(User.email == "person0@example.com"))
        person.email = "changed0@example.com"
        db.session.commit()
    assert client.post(f"{PREFIX}/runs/{revert_id}/approve").status_code == 303
    replanned = client.get(f"{PREFIX}/runs/{revert_id}").text
    assert 'id="csvd-notice"' in replanned and 'id="csvd-conflicts"' in replanned
    assert 'data-subject="person0@example.com"' in replanned
    assert client.post(f"{PREFIX}/runs/{revert_id}/approve").status_code == 303
    with app.app_context():
        assert runs.get_run(ORG, revert_id).conflict_count == 1
        kept = db.session.scalar(select(User).where(User.email == "changed0@example.com"))
        assert kept is not None and kept.active is True  # changed since: left alone
    original_page = client.get(f"{PREFIX}/runs/{applied}").text
    assert 'id="csvd-revert-button"' not in original_page
    assert f"already reverted by run {revert_id}" in original_page
    # refused reverts come back to the run page with the reason
    again = client.post(f"{PREFIX}/runs/{applied}/revert", follow_redirects=True)
    assert f"already reverted by run {revert_id}" in again.text
    assert "Reverts <a" in client.get(f"{PREFIX}/runs").text


@pytest.mark.settings(
    CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0), CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1
)
def test_cli_reject_revert_approve_and_status(app: Flask, stack: str) -> None:
    cli = app.test_cli_runner()
    with app.app_context():
        waiting = runs.start_run(
            ORG,
            runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv([employee(n) for n in range(3)])),
            ADMIN,
        ).id
    status = cli.invoke(args=["csvdirectory", "status"])
    assert waiting in status.output and "approve or reject it" in status.output
    result = cli.invoke(args=["csvdirectory", "reject", waiting, "--reason", "Wrong file"])
    assert result.exit_code == 0, result.output
    assert "Rejected by command line (Wrong file)" in result.output
    with app.app_context():
        assert runs.get_run(ORG, waiting).reject_reason == "Wrong file"
        second = runs.start_run(
            ORG,
            runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv([employee(n) for n in range(3)])),
            ADMIN,
        ).id
    result = cli.invoke(args=["csvdirectory", "approve", second])
    assert result.exit_code == 0 and "Approved by command line" in result.output, result.output

    declined = cli.invoke(args=["csvdirectory", "revert", second], input="n\n")
    assert declined.exit_code == EXIT_REFUSED
    assert "was rejected: nothing was changed." in declined.output
    assert "Employees deactivated: 3" in declined.output
    result = cli.invoke(args=["csvdirectory", "revert", second, "--yes"])
    assert result.exit_code == 0, result.output
    assert f"of run {second}: Approved by command line." in result.output
    refused = cli.invoke(args=["csvdirectory", "revert", second, "--yes"])
    assert refused.exit_code == EXIT_REFUSED and "already reverted" in refused.output
    assert "Uploads are open." in cli.invoke(args=["csvdirectory", "status"]).output
