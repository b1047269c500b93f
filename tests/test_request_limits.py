"""Hostile load: who is asking is checked before a byte of the body is read, every route with a
body has a size limit, and a chunked body is refused as soon as it crosses the limit.

Each test sends its body through a stream that counts the bytes the app reads from it.
"""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, TestResponse
from werkzeug.wrappers import Request

from flask_csvdirectory import runs, tokens
from flask_csvdirectory.models import TokenScope

from .conftest import ADMIN
from .test_dashboard import PREFIX
from .test_upload_memory import csrf_token

API = "/api/csv-directory/v1"
BOUNDARY = "hostileboundary"
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def _push_request_context() -> None:
    """Overrides pytest-flask's: each request gets its own ``g``, as in production."""


def login(client: FlaskClient, email: str = "admin@example.com", password: str = "admin") -> None:
    """Sign in through the host's CSRF-protected login form."""
    form = {"email": email, "password": password, "csrf_token": csrf_token(client, "/login")}
    assert client.post("/login", data=form).status_code == 302


class CountingStream(io.RawIOBase):
    """A multipart body with one endless file part, counting what is read of it."""

    def __init__(self, field: str = "employees", size: int = 1024 * MB) -> None:
        self.head = (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"Employees.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        ).encode()
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.read_bytes >= self.size:
            return 0
        count = min(len(buffer), self.size - self.read_bytes)
        start = self.read_bytes
        chunk = bytearray(count)
        line = b"person@example.com,E1,First,Last,Sales,Associate\r\n"
        for index in range(count):  # the part header, then CSV lines forever
            position = start + index
            if position < len(self.head):
                chunk[index] = self.head[position]
            else:
                chunk[index] = line[(position - len(self.head)) % len(line)]
        buffer[:count] = chunk
        self.read_bytes += count
        return count


def post(client: FlaskClient, path: str, stream: CountingStream, *, chunked: bool,
         headers: dict[str, str] | None = None,
         content_type: str = f"multipart/form-data; boundary={BOUNDARY}") -> TestResponse:
    environ = EnvironBuilder(path=path, method="POST", headers=headers or {}).get_environ()
    environ["CONTENT_TYPE"] = content_type
    environ["wsgi.input"] = io.BufferedReader(stream, 64 * 1024)
    if chunked:  # what a server that decodes chunked bodies gives the app: no length
        environ.pop("CONTENT_LENGTH", None)
        environ.update({"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    else:
        environ["CONTENT_LENGTH"] = str(stream.size)
    return client.open(Request(environ))


# -- the dashboard -------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_anonymous_dashboard_post_is_refused_before_its_body_is_read(
    client: FlaskClient, chunked: bool
) -> None:
    stream = CountingStream()
    response = post(client, f"{PREFIX}/upload", stream, chunked=chunked)
    assert response.status_code in (302, 401)
    assert "/login" in response.headers.get("Location", "/login")
    assert stream.read_bytes == 0


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_non_admin_dashboard_post_is_refused_before_its_body_is_read(
    client: FlaskClient,
) -> None:
    login(client, "manager@example.com", "manager")
    stream = CountingStream()
    response = post(client, f"{PREFIX}/upload", stream, chunked=True)
    assert response.status_code == 403
    assert stream.read_bytes == 0


@pytest.mark.settings(WTF_CSRF_ENABLED=True, CSVDIRECTORY_MAX_UPLOAD_BYTES=MB)
def test_admin_oversized_upload_is_refused_while_it_streams(client: FlaskClient) -> None:
    login(client)
    declared = CountingStream(size=50 * MB)
    response = post(client, f"{PREFIX}/upload", declared, chunked=False)
    assert response.status_code == 303  # flashed and sent back to the upload page
    assert declared.read_bytes == 0  # the declared length alone refuses it
    chunked = CountingStream(size=50 * MB)
    response = post(client, f"{PREFIX}/upload", chunked, chunked=True)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{PREFIX}/upload")
    # cut off as soon as the one file crossed its limit, not at the whole body's limit
    assert MB < chunked.read_bytes <= MB + 256 * 1024
    with client.session_transaction() as session:
        flashed = [message for _category, message in session.get("_flashes", [])]
    assert flashed[-1] == (
        "Employees.csv is larger than the limit of 1,048,576 bytes. Nothing was started."
    ), flashed


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_dashboard_forms_without_files_have_a_small_limit(client: FlaskClient) -> None:
    login(client)
    stream = CountingStream(field="approval_threshold", size=5 * MB)
    response = post(client, f"{PREFIX}/", stream, chunked=True)
    assert response.status_code == 303
    assert stream.read_bytes <= 64 * 1024 + 64 * 1024


# -- the API and SCIM ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [f"{API}/imports", "/scim/v2/Users"])
def test_api_and_scim_authenticate_before_reading_the_body(
    client: FlaskClient, path: str
) -> None:
    stream = CountingStream()
    response = post(client, path, stream, chunked=True,
                    headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert stream.read_bytes == 0


@pytest.mark.settings(CSVDIRECTORY_MAX_UPLOAD_BYTES=MB)
def test_chunked_api_upload_is_refused_as_soon_as_a_file_crosses_the_limit(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        _, secret = tokens.create_token("default", "ci", "test")
    stream = CountingStream(size=500 * MB)
    response = post(client, f"{API}/imports", stream, chunked=True,
                    headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 413
    error = response.json["error"]
    assert error["code"] == "file_too_large"
    assert error["message"] == (
        "Employees.csv is larger than the limit of 1,048,576 bytes. Nothing was started."
    )
    # the whole body may carry two files (2 MB here); one file is refused at its own limit
    assert MB < stream.read_bytes <= MB + 256 * 1024


def test_scim_body_has_a_limit(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        runs.update_settings("default", ADMIN, scim_enabled=True)
        _, secret = tokens.create_token("default", "scim", "test", (TokenScope.SCIM,))
    stream = CountingStream(size=50 * MB)
    response = post(client, "/scim/v2/Users", stream, chunked=True,
                    headers={"Authorization": f"Bearer {secret}"},
                    content_type="application/scim+json")
    assert response.status_code == 413, (response.text, stream.read_bytes)
    assert stream.read_bytes <= MB + 256 * 1024
