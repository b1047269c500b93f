"""The integrator JSON API: success paths and every refusal, in the one error shape."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_csvdirectory import runs, tokens
from flask_csvdirectory.adapter import ExtraColumn
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import IdempotentResponse, RunStatus, SyncRun, utcnow

from .conftest import ADMIN
from .factories import employee, employees_csv, users_csv

API = "/api/csv-directory/v1"
ORG = "default"


def make_token(app: Flask, org: str = ORG, name: str = "ci") -> str:
    with app.app_context():
        _token, plaintext = tokens.create_token(org, name, "Ada Admin")
    return plaintext


@pytest.fixture
def token(app: Flask) -> str:
    return make_token(app)


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def files(
    users: bytes | None = None, employees: bytes | None = None, *, count: int = 3
) -> dict[str, Any]:
    """A fresh multipart body with both files (pass ``b""`` to leave one out)."""
    body: dict[str, Any] = {}
    users = users_csv() if users is None else users
    employees = (
        employees_csv([employee(n) for n in range(count)]) if employees is None else employees
    )
    if users:
        body["users"] = (io.BytesIO(users), "Users.csv")
    if employees:
        body["employees"] = (io.BytesIO(employees), "Employees.csv")
    return body


def post_import(
    client: FlaskClient, auth: dict[str, str], body: dict[str, Any] | None = None, **kwargs: Any
) -> TestResponse:
    query = kwargs.pop("query", "")
    headers = {**auth, **kwargs.pop("headers", {})}
    return client.post(
        f"{API}/imports{query}",
        data=files() if body is None else body,
        headers=headers,
        content_type="multipart/form-data",
        **kwargs,
    )


def error_of(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """Assert the one error shape and return its ``error`` object."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "code", "message", "details"}
    assert body["error"]["status"] == status
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def set_threshold(app: Flask, threshold: int, org: str = ORG) -> None:
    with app.app_context():
        runs.update_settings(org, ADMIN, approval_threshold=threshold)


def run_count(app: Flask) -> int:
    with app.app_context():
        return len(get_state().session.query(SyncRun).all())


# -- auth ----------------------------------------------------------------------------------


def test_no_token_is_401_with_challenge(client: FlaskClient) -> None:
    response = client.get(f"{API}/imports")
    error_of(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "invalid_token" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "header", ["Bearer csvd_nope_nope", "Bearer nonsense", "Basic Zm9vOmJhcg=="]
)
def test_bad_token_is_401(client: FlaskClient, header: str) -> None:
    response = client.get(f"{API}/imports", headers={"Authorization": header})
    error_of(response, 401, "unauthorized")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_revoked_token_is_401(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        row, plaintext = tokens.create_token(ORG, "old", "Ada Admin")
        headers = {"Authorization": f"Bearer {plaintext}"}
        assert client.get(f"{API}/imports", headers=headers).status_code == 200
        assert tokens.revoke_token(ORG, row.id)
    error_of(client.get(f"{API}/imports", headers=headers), 401, "unauthorized")
    error_of(post_import(client, headers), 401, "unauthorized")
    assert run_count(app) == 0


def test_templates_need_a_token(client: FlaskClient) -> None:
    error_of(client.get(f"{API}/templates/users.csv"), 401, "unauthorized")


# -- templates -----------------------------------------------------------------------------


def test_templates_are_csv(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get(f"{API}/templates/users.csv", headers=auth)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "Users.csv" in response.headers["Content-Disposition"]
    header = next(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert {"email", "role", "teams"} <= set(header)

    get_state(app).adapter.extra_columns = (ExtraColumn("cost_center", example="CC-1"),)
    response = client.get(f"{API}/templates/employees.csv", headers=auth)
    assert response.status_code == 200
    header, example = list(csv.reader(io.StringIO(response.get_data(as_text=True))))[:2]
    assert header[-1] == "cost_center" and example[-1] == "CC-1"
    assert {"email", "team", "first_name"} <= set(header)


# -- imports -------------------------------------------------------------------------------


def test_import_is_accepted_and_readable(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    response = post_import(client, auth)
    assert response.status_code == 202, response.get_json()
    run = response.get_json()
    assert response.headers["Location"] == f"{API}/imports/{run['id']}"
    assert run["status"] == "auto_approved" and run["status_label"] == "Auto-Approved"
    assert run["channel"] == "api"
    assert run["uploaded_by"]["name"] == "API token 'ci'"
    assert run["files"]["employees"] == {
        "name": "Employees.csv",
        "size": len(employees_csv([employee(n) for n in range(3)])),
        "rows": 3,
    }
    assert run["change_counts"]["employee_created"] == 3
    assert run["timings"]["finished_at"] is not None

    again = client.get(response.headers["Location"], headers=auth)
    assert again.status_code == 200 and again.get_json()["id"] == run["id"]
    listing = client.get(f"{API}/imports", headers=auth).get_json()
    assert listing["total"] == 1 and [item["id"] for item in listing["items"]] == [run["id"]]
    with app.app_context():
        assert runs.get_run(ORG, run["id"]).token_id is not None


def test_second_import_in_window_is_429(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    assert post_import(client, auth).status_code == 202
    response = post_import(client, auth)
    error = error_of(response, 429, "window_closed")
    retry_after = int(response.headers["Retry-After"])
    assert 11 * 3600 < retry_after <= 12 * 3600 + 1  # the reopening second is rounded up
    assert error["details"]["retry_after"] == retry_after
    assert error["details"]["opens_at"].startswith(str(utcnow().year))
    assert run_count(app) == 1


def test_import_after_an_error_run_is_accepted(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    bad = employees_csv([employee(1, email="not-an-email")])
    failed = post_import(client, auth, files(employees=bad))
    assert failed.status_code == 202
    assert failed.get_json()["status"] == "error"
    assert "Employees.csv" in failed.get_json()["error_reason"]
    response = post_import(client, auth)
    assert response.status_code == 202
    assert response.get_json()["status"] == "auto_approved"


def test_missing_file_is_400(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    error = error_of(post_import(client, auth, files(users=b"")), 400, "missing_file")
    assert "Users.csv" in error["message"]
    error = error_of(post_import(client, auth, files(employees=b"")), 400, "missing_file")
    assert "Employees.csv" in error["message"]
    not_multipart = client.post(f"{API}/imports", json={"users": "x"}, headers=auth)
    error_of(not_multipart, 400, "missing_file")
    assert run_count(app) == 0


def test_csv_text_fields_are_accepted(client: FlaskClient, auth: dict[str, str]) -> None:
    body = {
        "users": users_csv().decode(),
        "employees": employees_csv([employee(1)]).decode(),
    }
    response = post_import(client, auth, body)
    assert response.status_code == 202
    assert response.get_json()["files"]["users"]["name"] == "Users.csv"


@pytest.mark.settings(CSVDIRECTORY_MAX_UPLOAD_BYTES=100)
def test_too_large_file_is_413(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    error = error_of(post_import(client, auth), 413, "file_too_large")
    assert "100 bytes" in error["message"]
    huge = files(employees=b"email\n" + b"x" * 200_000)
    error = error_of(post_import(client, auth, huge), 413, "request_too_large")
    assert "at most 100 bytes" in error["message"]
    assert run_count(app) == 0


def test_disabled_integration_is_409(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    with app.app_context():
        runs.update_settings(ORG, ADMIN, enabled=False)
    error = error_of(post_import(client, auth), 409, "integration_disabled")
    assert "disabled" in error["message"]
    # a dry run still shows what an import would do, and says it would be refused
    plan = post_import(client, auth, query="?dry_run=true")
    assert plan.status_code == 200 and plan.get_json()["integration_enabled"] is False
    assert run_count(app) == 0


def test_invalid_query_is_422(client: FlaskClient, auth: dict[str, str]) -> None:
    error = error_of(post_import(client, auth, query="?dry_run=perhaps"), 422, "validation_error")
    assert "dry_run" in error["details"]["query"]


# -- dry run -------------------------------------------------------------------------------


def test_dry_run_plans_without_a_run(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    set_threshold(app, 2)
    response = post_import(client, auth, query="?dry_run=true&limit=2")
    assert response.status_code == 200
    plan = response.get_json()
    assert plan["dry_run"] is True
    assert plan["change_counts"]["employee_created"] == 3
    assert plan["change_count"] == sum(plan["change_counts"].values())
    assert len(plan["changes"]) == 2 and plan["changes_truncated"] is True
    assert plan["changes"][0]["label"]
    assert plan["would_wait_for_approval"] is True
    assert plan["window_opens_at"] is None and plan["integration_enabled"] is True
    assert run_count(app) == 0
    # the window is still open
    assert post_import(client, auth).status_code == 202


def test_dry_run_reports_every_row_error(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    bad = employees_csv([employee(1, email="nope"), employee(2, email="also-nope")])
    response = post_import(client, auth, files(employees=bad), query="?dry_run=1")
    error = error_of(response, 400, "invalid_files")
    assert error["details"]["error_count"] == 2
    first = error["details"]["errors"][0]
    assert first == {
        "file": "Employees.csv",
        "line": 2,
        "column": "email",
        "value": "nope",
        "message": first["message"],
    }
    assert {e["line"] for e in error["details"]["errors"]} == {2, 3}
    assert run_count(app) == 0


# -- idempotency ---------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_first_response(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    key = {"Idempotency-Key": "upload-2024-06-01"}
    first = post_import(client, auth, headers=key)
    second = post_import(client, auth, headers=key)
    assert first.status_code == second.status_code == 202
    assert second.get_json() == first.get_json()
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert run_count(app) == 1


def test_same_idempotency_key_with_other_files_is_422(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    key = {"Idempotency-Key": "k1"}
    assert post_import(client, auth, headers=key).status_code == 202
    other = post_import(client, auth, files(count=5), headers=key)
    error_of(other, 422, "idempotency_key_reused")
    assert run_count(app) == 1


def test_refused_request_does_not_keep_its_key(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    key = {"Idempotency-Key": "retry-me"}
    with app.app_context():
        runs.update_settings(ORG, ADMIN, enabled=False)
    error_of(post_import(client, auth, headers=key), 409, "integration_disabled")
    with app.app_context():
        runs.update_settings(ORG, ADMIN, enabled=True)
    assert post_import(client, auth, headers=key).status_code == 202


def test_pending_key_is_409_and_a_stale_one_is_taken_over(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    key = {"Idempotency-Key": "in-flight"}
    # the first request with this key reserved it and is still running
    assert post_import(client, auth, headers=key).status_code == 202
    with app.app_context():
        session = get_state().session
        record = session.query(IdempotentResponse).one()
        record.status_code = 0
        session.commit()
    error_of(post_import(client, auth, headers=key), 409, "idempotency_key_in_use")
    with app.app_context():
        session = get_state().session
        record = session.query(IdempotentResponse).one()
        record.created_at = utcnow() - timedelta(hours=1)
        session.query(SyncRun).delete()
        session.commit()
    assert post_import(client, auth, headers=key).status_code == 202


def test_invalid_idempotency_key_is_400(client: FlaskClient, auth: dict[str, str]) -> None:
    error_of(
        post_import(client, auth, headers={"Idempotency-Key": "k" * 300}),
        400,
        "invalid_idempotency_key",
    )


def test_idempotency_keys_are_per_organization(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    with app.app_context():
        runs.update_settings("other", ADMIN, enabled=True)
    other = {"Authorization": f"Bearer {make_token(app, 'other')}"}
    key = {"Idempotency-Key": "shared"}
    mine = post_import(client, auth, headers=key).get_json()
    theirs = post_import(client, other, headers=key).get_json()
    assert mine["id"] != theirs["id"]


# -- approval ------------------------------------------------------------------------------


def test_approve_flow(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    set_threshold(app, 1)
    run = post_import(client, auth).get_json()
    assert run["status"] == "waiting"
    assert run["status_label"] == "Waiting for Approval"
    response = client.post(run["links"]["approve"], headers=auth)
    assert response.status_code == 202
    approved = response.get_json()
    assert approved["status"] == "approved"
    assert approved["status_label"] == "Approved by API token 'ci'"
    assert approved["decided_by"]["name"] == "API token 'ci'"
    assert approved["timings"]["finished_at"] is not None
    error_of(client.post(run["links"]["approve"], headers=auth), 409, "invalid_state")
    error_of(client.post(run["links"]["reject"], headers=auth), 409, "invalid_state")
    with app.app_context():
        assert runs.get_run(ORG, run["id"]).status == RunStatus.APPROVED.value


def test_reject_flow(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    set_threshold(app, 1)
    run = post_import(client, auth).get_json()
    response = client.post(f"{API}/imports/{run['id']}/reject", headers=auth)
    assert response.status_code == 200
    assert response.get_json()["status_label"] == "Rejected by API token 'ci'"
    assert response.get_json()["status"] == "rejected"
    error_of(client.post(f"{API}/imports/{run['id']}/approve", headers=auth), 409, "invalid_state")


def test_other_organization_sees_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    set_threshold(app, 1)
    run = post_import(client, auth).get_json()
    other = {"Authorization": f"Bearer {make_token(app, 'other')}"}
    for suffix in ("", "/changes", "/errors"):
        error_of(client.get(f"{API}/imports/{run['id']}{suffix}", headers=other), 404, "not_found")
    for action in ("approve", "reject"):
        error_of(
            client.post(f"{API}/imports/{run['id']}/{action}", headers=other), 404, "not_found"
        )
    listing = client.get(f"{API}/imports", headers=other).get_json()
    assert listing["items"] == [] and listing["total"] == 0
    assert client.get(f"{API}/imports/{run['id']}", headers=auth).get_json()["status"] == (
        "waiting"
    )


# -- listings ------------------------------------------------------------------------------


@pytest.mark.settings(CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0))
@pytest.mark.settings(CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0))
def test_list_pagination_and_status_filter(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    set_threshold(app, 1)
    ids = [post_import(client, auth, files(count=2)).get_json()["id"]]
    client.post(f"{API}/imports/{ids[0]}/reject", headers=auth)  # one open run at a time
    ids.append(post_import(client, auth, files(count=3)).get_json()["id"])
    client.post(f"{API}/imports/{ids[1]}/approve", headers=auth)
    ids.append(post_import(client, auth, files(count=4)).get_json()["id"])
    page = client.get(f"{API}/imports?per_page=2", headers=auth).get_json()
    assert page["total"] == 3 and page["pages"] == 2
    assert [item["id"] for item in page["items"]] == ids[:0:-1]
    assert page["links"]["prev"] is None and "page=2" in page["links"]["next"]
    second = client.get(page["links"]["next"], headers=auth).get_json()
    assert [item["id"] for item in second["items"]] == [ids[0]]
    rejected = client.get(f"{API}/imports?status=rejected", headers=auth).get_json()
    assert [item["id"] for item in rejected["items"]] == [ids[0]]
    error_of(client.get(f"{API}/imports?status=Done", headers=auth), 422, "validation_error")
    error_of(client.get(f"{API}/imports?page=0", headers=auth), 422, "validation_error")
    error_of(client.get(f"{API}/imports?per_page=100000", headers=auth), 422, "validation_error")


def test_changes_pagination_and_kind_filter(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    set_threshold(app, 1)
    run = post_import(client, auth, files(count=5)).get_json()
    url = run["links"]["changes"]
    everything = client.get(f"{url}?per_page=100", headers=auth).get_json()
    assert everything["total"] == run["change_count"]
    assert everything["counts"] == run["change_counts"]
    page = client.get(f"{url}?per_page=2&page=2", headers=auth).get_json()
    assert page["items"] == everything["items"][2:4]
    created = client.get(f"{url}?kind=employee_created&per_page=3", headers=auth).get_json()
    assert created["total"] == 5 and created["pages"] == 2
    assert {item["kind"] for item in created["items"]} == {"employee_created"}
    assert created["items"][0]["label"] == "Employees created"
    assert "kind=employee_created" in created["links"]["next"]
    error_of(client.get(f"{url}?kind=everything", headers=auth), 422, "validation_error")


def test_errors_as_json_and_csv(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    bad = employees_csv([employee(1, email="=HYPERLINK(1)"), employee(2, email="bad")])
    run = post_import(client, auth, files(employees=bad)).get_json()
    assert run["status"] == "error" and run["error_count"] == 2
    body = client.get(run["links"]["errors"], headers=auth).get_json()
    assert body["error_count"] == 2 and body["error_reason"] == run["error_reason"]
    assert [(e["file"], e["line"], e["column"]) for e in body["items"]] == [
        ("Employees.csv", 2, "email"),
        ("Employees.csv", 3, "email"),
    ]
    for response in (
        client.get(run["links"]["errors"], headers={**auth, "Accept": "text/csv"}),
        client.get(f"{run['links']['errors']}?format=csv", headers=auth),
    ):
        assert response.status_code == 200 and response.mimetype == "text/csv"
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert rows[0] == ["file", "line", "column", "value", "message"]
        assert rows[1][:4] == ["Employees.csv", "2", "email", "'=HYPERLINK(1)"]
        assert rows[2][3] == "bad"
    error_of(
        client.get(f"{run['links']['errors']}?format=xml", headers=auth), 422, "validation_error"
    )


# -- reading runs reaps dead jobs ----------------------------------------------------------


def test_reading_a_dead_run_marks_it_failed(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    with app.app_context():
        run = runs.start_run(
            ORG,
            runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv([employee(1)])),
            ADMIN,
            enqueue=False,
        )
        run.heartbeat_at = utcnow() - timedelta(hours=1)
        get_state().session.commit()
        run_id = run.id
    body = client.get(f"{API}/imports/{run_id}", headers=auth).get_json()
    assert body["status"] == "error"
    assert "nothing was applied; you can upload again now" in body["error_reason"]


# -- errors inside the blueprint -----------------------------------------------------------


@pytest.mark.parametrize("run_id", ["0" * 32, "nope", "x" * 300, "%00", "..%2f..%2fetc"])
def test_unknown_run_is_404(client: FlaskClient, auth: dict[str, str], run_id: str) -> None:
    error_of(client.get(f"{API}/imports/{run_id}", headers=auth), 404, "not_found")


def test_unknown_path_and_method(client: FlaskClient, auth: dict[str, str]) -> None:
    error_of(client.get(f"{API}/nothing/here", headers=auth), 404, "not_found")
    error_of(client.get(f"{API}/", headers=auth), 404, "not_found")
    response = client.delete(f"{API}/imports", headers=auth)
    error_of(response, 405, "method_not_allowed")
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}
    error_of(
        client.get(f"{API}/imports/{'0' * 32}/approve", headers=auth), 405, "method_not_allowed"
    )
    # outside the API's prefix, the host's own handlers answer
    assert client.get("/no-such-page").mimetype != "application/json"


def test_unexpected_error_is_500_json(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database exploded: secret details")

    monkeypatch.setattr(runs, "list_runs", broken)
    error = error_of(client.get(f"{API}/imports", headers=auth), 500, "internal_error")
    assert "secret" not in error["message"]


# -- the OpenAPI document ------------------------------------------------------------------


def test_openapi_document(client: FlaskClient) -> None:
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["servers"] == [{"url": API}]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert set(spec["paths"]) == {
        "/openapi.json",
        "/templates/users.csv",
        "/templates/employees.csv",
        "/templates/prefilled/users.csv",
        "/templates/prefilled/employees.csv",
        "/settings",
        "/imports",
        "/imports/{run_id}",
        "/imports/{run_id}/changes",
        "/imports/{run_id}/errors",
        "/imports/{run_id}/approve",
        "/history",
        "/imports/{run_id}/reject",
        "/imports/{run_id}/revert",
        "/imports/{run_id}/conflicts",
        "/status",
    }
    create = spec["paths"]["/imports"]["post"]
    assert {"200", "202", "400", "401", "409", "413", "422", "429", "500"} <= set(
        create["responses"]
    )
    assert "Retry-After" in create["responses"]["429"]["headers"]
    assert create["security"] == [{"bearerAuth": []}]
    assert {p["name"] for p in create["parameters"]} == {"dry_run", "limit", "Idempotency-Key"}
    assert "Error" in spec["components"]["schemas"]


# -- the real stack ------------------------------------------------------------------------


@pytest.mark.realstack
def test_import_and_approve_on_each_stack(
    stack: str, app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    set_threshold(app, 1)
    key = {"Idempotency-Key": f"flow-{stack}"}
    first = post_import(client, auth, headers=key)
    assert first.status_code == 202
    assert post_import(client, auth, headers=key).get_json() == first.get_json()
    error_of(post_import(client, auth), 409, "run_in_progress")  # the first one still waits
    run = first.get_json()
    assert run["status"] == "waiting"
    approved = client.post(run["links"]["approve"], headers=auth)
    assert approved.status_code == 202
    error_of(post_import(client, auth), 429, "window_closed")
    assert approved.get_json()["status_label"] == "Approved by API token 'ci'"
    listing = client.get(f"{API}/imports?status=approved", headers=auth).get_json()
    assert [item["id"] for item in listing["items"]] == [run["id"]]
    other = {"Authorization": f"Bearer {make_token(app, 'other')}"}
    error_of(client.get(run["links"]["self"], headers=other), 404, "not_found")


@pytest.mark.realstack
@pytest.mark.parametrize("stack", ["postgres"])
def test_simultaneous_requests_with_one_key_start_one_run(
    stack: str, app: Flask, auth: dict[str, str]
) -> None:
    barrier = threading.Barrier(4)
    responses: list[TestResponse] = []

    def send() -> None:
        client = app.test_client()
        barrier.wait()
        responses.append(post_import(client, auth, headers={"Idempotency-Key": "same"}))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {202, 409} and 202 in statuses, statuses
    ids = {response.get_json()["id"] for response in responses if response.status_code == 202}
    assert len(ids) == 1
    assert run_count(app) == 1
