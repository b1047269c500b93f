"""Uploaded files never touch the disk in plaintext: Werkzeug would spool a multipart file over
500 KB to a temporary file; both upload endpoints parse into memory instead."""

from __future__ import annotations

import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import TestResponse, encode_multipart

from example_app.models import db
from flask_csvdirectory import tokens
from flask_csvdirectory.models import RunStatus, SyncRun

from .factories import employee, employees_csv, users_csv

PREFIX = "/settings/integrations/csv-import"


@pytest.fixture(autouse=True)
def _push_request_context() -> None:
    """Overrides pytest-flask's: each request gets its own ``g``, as in production (the CSRF
    check of one request must not count for the next)."""


@pytest.fixture(autouse=True)
def no_temporary_files(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was spooled to a temporary file on disk")

    monkeypatch.setattr("werkzeug.formparser.SpooledTemporaryFile", refuse)
    monkeypatch.setattr("werkzeug.formparser.TemporaryFile", refuse, raising=False)


def post_pair(client: FlaskClient, path: str, **extra: str) -> TestResponse:
    """POST both files (Employees.csv over 700 KB) as one multipart body built in memory."""
    employees = employees_csv(employee(n, title="x" * 80) for n in range(6000))
    assert len(employees) > 700 * 1024
    fields = {
        "users": FileStorage(io.BytesIO(users_csv()), "Users.csv"),
        "employees": FileStorage(io.BytesIO(employees), "Employees.csv"),
        **extra,
    }
    boundary, body = encode_multipart(MultiDict(fields))
    return client.post(
        path, data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def csrf_token(client: FlaskClient, path: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get(path).text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


@pytest.mark.settings(WTF_CSRF_ENABLED=True, CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=10)
def test_dashboard_upload_with_csrf_stays_in_memory(app: Flask, client: FlaskClient) -> None:
    login = {"email": "admin@example.com", "password": "admin"}
    response = client.post("/login", data={**login, "csrf_token": csrf_token(client, "/login")})
    assert response.status_code == 302
    token = csrf_token(client, f"{PREFIX}/upload")
    refused = post_pair(client, f"{PREFIX}/upload")
    assert refused.status_code == 303  # no CSRF token: the dashboard's own check refuses
    assert "/runs/" not in refused.headers["Location"]
    with app.app_context():
        assert db.session.query(SyncRun).count() == 0
    response = post_pair(client, f"{PREFIX}/upload", csrf_token=token)
    assert response.status_code == 303 and "/runs/" in response.headers["Location"]
    with app.app_context():
        run = db.session.query(SyncRun).one()
        assert (run.employees_rows, run.status) == (6000, RunStatus.WAITING.value)


def test_api_upload_stays_in_memory(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        _, secret = tokens.create_token("default", "ci", "test")
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    response = post_pair(client, "/api/csv-directory/v1/imports")
    assert response.status_code == 202, response.text
    with app.app_context():
        assert db.session.query(SyncRun).one().employees_rows == 6000


def test_an_uploaded_file_is_read_without_a_copy() -> None:
    from flask_csvdirectory.web.uploads import CappedBuffer

    buffer = CappedBuffer(10 * 1024 * 1024, "Employees.csv")
    for _ in range(100):
        buffer.write(b"x" * 10_000)
    buffer.seek(0)
    data = buffer.read()
    assert len(data) == 1_000_000 and data is buffer.getvalue()  # one copy: the buffer's own
    assert buffer.read() == b""
    buffer.seek(0)
    assert buffer.read(3) == b"xxx" and buffer.read(2) == b"xx"
