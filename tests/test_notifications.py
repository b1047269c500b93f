"""Notifications: every admin is emailed (real SMTP, aiosmtpd) when a run waits for approval,
fails or is applied; invitations with a set-password link for people given dashboard access."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_csvdirectory import runs, signals
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.notify import Notification, SMTPNotifier

from .conftest import ADMIN, Inbox, build_app, free_port
from .factories import employee, users_csv
from .test_dashboard import PREFIX, login, pair, people_users, upload_run

EXTERNAL = "https://platform.example.com"


@pytest.fixture
def mail_app(tmp_path: Path, smtp_server: tuple[Inbox, int]) -> Iterator[Flask]:
    """The example platform whose MAIL_* settings point at the test SMTP server."""
    _, port = smtp_server
    app = build_app(
        "sqlite",
        tmp_path,
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=port,
        MAIL_DEFAULT_SENDER="directory@example.com",
        EXAMPLE_EXTERNAL_URL=EXTERNAL,
        CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=3,
        CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0),
    )
    with app.app_context():
        runs.update_settings("default", ADMIN, enabled=True)
    yield app
    from example_app.models import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def body(message: Any) -> str:
    return str(message.get_content())


def test_admins_are_emailed_when_a_run_waits_and_when_it_is_applied(
    mail_app: Flask, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    client = mail_app.test_client()
    login(client)
    run_id = upload_run(client, pair([employee(n) for n in range(1, 6)]))
    [waiting] = inbox.wait_for(1)
    assert waiting["Subject"] == "CSV import: 6 changes wait for your approval"
    assert waiting["From"] == "directory@example.com"
    assert waiting["X-Envelope-To"] == "admin@example.com"  # the only admin
    text = body(waiting)
    assert "Waiting for Approval" in text and "Employees created: 5" in text
    assert f"Review the run: {EXTERNAL}{PREFIX}/runs/{run_id}" in text

    client.post(f"{PREFIX}/runs/{run_id}/approve")
    applied = inbox.wait_for(2)[1]
    assert applied["Subject"] == "CSV import applied: 6 changes"
    assert re.search(r"6 changes were applied in \d+\.\d s \(Approved by Ada Admin\)\.",
                     body(applied))


def test_admins_are_emailed_when_a_run_fails(
    mail_app: Flask, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    client = mail_app.test_client()
    login(client)
    upload_run(client, pair([employee(1, email="broken@")]))
    [failed] = inbox.wait_for(1)
    assert failed["Subject"] == "CSV import failed: Error while processing"
    assert "Reason: Employees.csv had 1 error" in body(failed)
    assert "The directory was not changed." in body(failed)


def test_a_destructive_waiting_run_names_the_risk_in_the_email(
    mail_app: Flask, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    client = mail_app.test_client()
    login(client)
    with mail_app.app_context():
        runs.update_settings("default", ADMIN, approval_threshold=50)
    upload_run(client, pair([employee(1), employee(2)]))
    with mail_app.app_context():
        runs.update_settings("default", ADMIN, approval_threshold=0)
    upload_run(client, pair([employee(1)]))  # person2 leaves
    waiting = inbox.with_subject("wait for your approval")
    assert len(inbox.wait_for(2)) == 2 and len(waiting) == 1
    assert "  ! Employees deactivated: 1" in body(waiting[0])


def test_a_mail_server_that_is_down_never_fails_a_run(tmp_path: Path) -> None:
    app = build_app("sqlite", tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port())
    with app.app_context():
        runs.update_settings("default", ADMIN, enabled=True)
    client = app.test_client()
    login(client)
    run_id = upload_run(client, pair([employee(1)]))
    with app.app_context():
        assert runs.get_run("default", run_id).status == "Auto-Approved"


def test_without_a_mail_server_only_the_signals_are_sent(app: Flask, client: FlaskClient) -> None:
    assert get_state(app).notifier is None and get_state(app).mailer is None
    seen: list[str] = []

    def on_applied(sender: Flask, run: Any, **_: Any) -> None:
        seen.append(run.id)

    signals.run_applied.connect(on_applied, sender=app)
    login(client)
    run_id = upload_run(client, pair([employee(1)]))
    assert seen == [run_id]


def test_the_notifier_reads_the_hosts_mail_settings_and_its_own_first() -> None:
    notifier = SMTPNotifier.from_config({"MAIL_SERVER": "smtp.host", "MAIL_PORT": 2525,
                                         "MAIL_DEFAULT_SENDER": ("Ops", "ops@host"),
                                         "CSVDIRECTORY_MAIL_PORT": 587,
                                         "CSVDIRECTORY_MAIL_USE_TLS": True})
    assert notifier is not None
    assert (notifier.host, notifier.port, notifier.sender, notifier.use_tls) == (
        "smtp.host", 587, "Ops <ops@host>", True)
    assert SMTPNotifier.from_config({}) is None


def test_a_custom_notifier_receives_the_notifications(tmp_path: Path) -> None:
    sent: list[tuple[list[str], Notification]] = []

    class Recorder:
        def send(self, recipients: Any, notification: Notification) -> None:
            sent.append((list(recipients), notification))

    app = build_app("sqlite", tmp_path)
    state = get_state(app)
    # a host passes CSVDirectory(notifier=...); here the example's extension is re-pointed
    from flask_csvdirectory.notify import AdminMailer

    state.notifier = Recorder()
    state.mailer = AdminMailer(app, state.notifier)
    state.mailer.connect()
    with app.app_context():
        runs.update_settings("default", ADMIN, enabled=True)
    client = app.test_client()
    login(client)
    upload_run(client, pair([employee(1)]))
    assert [(r, n.event) for r, n in sent] == [(["admin@example.com"], "applied")]


def test_new_dashboard_users_get_an_invitation_to_set_a_password(
    mail_app: Flask, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    grants: list[Any] = []

    def record(sender: Flask, **kwargs: Any) -> None:
        grants.extend(kwargs["grants"])

    signals.dashboard_access_granted.connect(record, sender=mail_app)
    client = mail_app.test_client()
    login(client)
    users = [*people_users(), {"email": "person1@example.com", "name": "Pat One",
                               "role": "Manager", "teams": "Sales"}]
    data = pair([employee(1)])
    data["users"] = (io.BytesIO(users_csv(users)), "Users.csv")
    upload_run(client, data)
    assert [(g.email, g.role, g.teams) for g in grants] == [
        ("person1@example.com", "Manager", ["Sales"])]
    inbox.wait_for(2)
    [invitation] = inbox.with_subject("invited")
    assert invitation["To"] == "person1@example.com"
    link = re.search(rf"{EXTERNAL}(/set-password/\S+)", body(invitation)).group(1)

    visitor = mail_app.test_client()
    assert "Set your password" in visitor.get(link).text
    short = visitor.post(link, data={"password": "short", "confirm": "short"})
    assert "Use at least 8 characters." in short.text
    done = visitor.post(link, data={"password": "s3cret-pass", "confirm": "s3cret-pass"})
    assert done.status_code == 302
    assert visitor.get(link).status_code == 404  # works once
    login(visitor, "person1@example.com", "s3cret-pass")
    assert visitor.get(f"{PREFIX}/").status_code == 403  # a manager, signed in; not an admin
