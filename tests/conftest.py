"""Fixtures over both stacks.

- embedded: SQLite in a temporary file, jobs inline (``sync``) or on the in-process thread;
- real: PostgreSQL at 127.0.0.1:5432 (database ``test``) and Redis at 127.0.0.1:6379.

``@pytest.mark.settings(KEY=value)`` adds Flask config to the ``app`` fixture. Real-stack tests
skip with a reason when a service is down, unless ``CSVDIRECTORY_REQUIRE_SERVICES=1`` (CI sets
it), where a missing service is a failure.
"""

from __future__ import annotations

import email
import email.policy
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_csvdirectory import runs

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("CSVDIRECTORY_REQUIRE_SERVICES") == "1"
ADMIN = runs.Actor(id="1", name="Ada Admin")
#: A fixed Fernet key for apps that run outside testing mode (live servers, worker processes)
TEST_ENCRYPTION_KEY = "wCW0hYRmH2ZKhrGUkcr-hVFjCOhOjMkJ4xDFXPvuwS8="


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_services() -> None:
    """Skip (or fail, in CI) when PostgreSQL or Redis is down."""
    missing = [
        name
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379))
        if not _reachable("127.0.0.1", port)
    ]
    if missing:
        message = f"{' and '.join(missing)} not running on 127.0.0.1"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


def _empty_postgres() -> None:
    """Drop every table of the test database, so the app starts on an empty one."""
    from sqlalchemy import create_engine

    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After each test's body, before its fixtures close engines: the reference adapter's
    background text index builds have ended (their connections are back in the pool)."""
    yield
    from flask_csvdirectory.adapters.sqlalchemy import wait_for_text_indexes

    wait_for_text_indexes()


def build_app(stack: str, tmp_path: Path, **config: Any) -> Flask:
    """The example platform on ``stack`` ("sqlite" or "postgres"), empty but for its admin."""
    from example_app import create_app

    base: dict[str, Any] = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        "CSVDIRECTORY_JOBS_MODE": "sync",
        "EXAMPLE_SEED": False,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }
    if stack == "postgres":
        require_services()
        base["SQLALCHEMY_DATABASE_URI"] = POSTGRES_URL
        base["CSVDIRECTORY_REDIS_URL"] = REDIS_URL
    else:
        base["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'test.sqlite3'}"
    base.update(config)
    if stack == "postgres":
        _empty_postgres()
    app = create_app(base)
    with app.app_context():
        from example_app import seed

        seed()
    return app


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest) -> str:
    """Both stacks: tests using it run once on SQLite and once on PostgreSQL."""
    return request.param


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """The example platform on SQLite (or on the ``stack`` fixture's stack when a test uses it),
    with inline jobs and the integration enabled."""
    marker = request.node.get_closest_marker("settings")
    config = dict(marker.kwargs) if marker else {}
    stack = request.getfixturevalue("stack") if "stack" in request.fixturenames else "sqlite"
    app = build_app(stack, tmp_path, **config)
    with app.app_context():
        runs.update_settings("default", ADMIN, enabled=True)
    yield app
    from example_app.models import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def redis_conn() -> Iterator[Any]:
    """A real Redis connection on a test database, flushed before and after."""
    require_services()
    from redis import Redis

    conn = Redis.from_url(REDIS_URL)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


class Inbox:
    """Messages received by the test SMTP server (aiosmtpd), parsed."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.received = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        self.received.set()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Any]:
        """The first ``count`` messages, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages[:count]

    def with_subject(self, text: str) -> list[Any]:
        return [m for m in self.messages if text in str(m["Subject"])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on localhost (aiosmtpd) and what it received: (inbox, port)."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()
