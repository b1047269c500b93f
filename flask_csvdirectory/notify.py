"""Email every admin of the organization when a run needs them or ends.

The extension connects :func:`notify_admins` to its own signals (waiting for approval, held by a
safeguard, failed, applied); the signals stay, so a host that prefers another channel connects
its own receivers and sets ``CSVDIRECTORY_NOTIFY = False``.

The sending itself goes through a :class:`Notifier`, a one-method interface. The default,
:class:`SMTPNotifier`, uses :mod:`smtplib` with the host's mail settings: ``CSVDIRECTORY_MAIL_*``
keys, falling back to the ``MAIL_*`` keys Flask-Mail and Flask-Mailman hosts already have. Pass
``CSVDirectory(notifier=...)`` to send through anything else. A failure to send is logged and
never fails the run.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol

from flask import Flask

from . import review
from .changes import ChangeSet
from .models import SyncRun

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notification:
    """One message: its event (``waiting``, ``held``, ``failed``, ``applied``), run, subject,
    plain-text body and a link to the run (``None`` without ``CSVDIRECTORY_EXTERNAL_URL``)."""

    event: str
    org: str
    run_id: str
    subject: str
    body: str
    url: str | None = None


class Notifier(Protocol):
    """Sends a notification to some recipients. Implement this to use another channel."""

    def send(self, recipients: Sequence[str], notification: Notification) -> None:
        """Deliver ``notification`` to every address of ``recipients`` (may raise)."""
        ...


class SMTPNotifier:
    """A :class:`Notifier` over SMTP (``smtplib``): one message, every admin in ``To``."""

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        use_ssl: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password = username, password
        self.use_tls, self.use_ssl, self.timeout = use_tls, use_ssl, timeout

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SMTPNotifier | None:
        """The notifier the app's mail settings describe, or ``None`` when no server is set."""

        def value(key: str, default: Any = None) -> Any:
            own = config.get(f"CSVDIRECTORY_MAIL_{key}")
            return own if own is not None else config.get(f"MAIL_{key}", default)

        host = value("SERVER")
        if not host:
            return None
        sender = value("SENDER") or config.get("MAIL_DEFAULT_SENDER") or f"no-reply@{host}"
        if isinstance(sender, tuple):  # Flask-Mail allows (name, address)
            sender = f"{sender[0]} <{sender[1]}>"
        return cls(
            str(host),
            int(value("PORT", 25)),
            sender=str(sender),
            username=value("USERNAME"),
            password=value("PASSWORD"),
            use_tls=bool(value("USE_TLS", False)),
            use_ssl=bool(value("USE_SSL", False)),
        )

    def send(self, recipients: Sequence[str], notification: Notification) -> None:
        """Send ``notification`` as one plain-text email."""
        self.send_mail(recipients, notification.subject, notification.body)

    def send_mail(self, recipients: Sequence[str], subject: str, body: str) -> None:
        """Send one plain-text email (also for a host's own messages, such as invitations)."""
        if not recipients:
            return
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2].strip("> "))
        message.set_content(body)
        smtp_class = smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP
        with smtp_class(self.host, self.port, timeout=self.timeout) as smtp:
            if self.use_tls and not self.use_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)


# -- what the messages say -------------------------------------------------------------------


def run_url(config: dict[str, Any], run: SyncRun) -> str | None:
    """The run page's absolute URL, when ``CSVDIRECTORY_EXTERNAL_URL`` is set."""
    base = config.get("EXTERNAL_URL")
    if not base:
        return None
    return f"{str(base).rstrip('/')}{config['URL_PREFIX']}/runs/{run.id}"


def _counts_text(summary: review.Summary) -> list[str]:
    lines = [
        f"  {'! ' if row.destructive else '  '}{row.label}: {row.count}" for row in summary.rows
    ]
    if summary.admins_affected:
        names = ", ".join(
            f"{who.name} <{who.email}>" if who.name else who.email
            for who in summary.admins_affected
        )
        lines.append(f"  Admins losing access: {names}")
    return lines


def compose(
    event: str,
    run: SyncRun,
    config: dict[str, Any],
    *,
    changeset: ChangeSet | None = None,
    people: review.People | None = None,
    reason: str | None = None,
    summary: review.Summary | None = None,
) -> Notification:
    """The email for ``event`` about ``run``: what happened, the counts (destructive first) and
    what the admin can do. The counts come from ``summary`` (a stored change set's index) or
    else from ``changeset`` with ``people``."""
    url = run_url(config, run)
    count = run.change_count or 0
    reasons = list(run.guard_reasons or [])  # GuardReason.to_dict() of each safeguard
    lines: list[str]
    match event:
        case "held" | "waiting":
            subject = (
                f"CSV import held by a safeguard: {count} changes wait for approval"
                if event == "held"
                else f"CSV import: {count} changes wait for your approval"
            )
            lines = [
                f"A sync uploaded by {run.uploaded_by_name} is Waiting for Approval.",
                "Nothing is applied to the directory until an admin approves it.",
            ]
            if reasons:
                lines += ["", "Why it is held:", *(f"  - {_reason_text(r)}" for r in reasons)]
        case "failed":
            subject = "CSV import failed: Error while processing"
            lines = [
                f"A sync uploaded by {run.uploaded_by_name} ended in Error while processing.",
                f"Reason: {reason or run.error_reason or 'unknown'}",
                "The directory was not changed.",
            ]
        case "applied":
            seconds = (run.timings or {}).get("apply_seconds")
            took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
            subject = f"CSV import applied: {count} changes"
            lines = [f"{count} changes were applied{took} ({run.status_label})."]
        case _:
            raise ValueError(f"Unknown notification event {event!r}")
    if summary is None and changeset is not None and people is not None and changeset:
        summary = review.summarize(changeset, people)
    if summary is not None and summary.total:
        lines += ["", "Changes:", *_counts_text(summary)]
    lines += ["", f"Review the run: {url}" if url else f"Run id: {run.id}"]
    return Notification(event, run.org, run.id, subject, "\n".join(lines) + "\n", url)


def _reason_text(reason: Any) -> str:
    if isinstance(reason, dict):
        return str(reason.get("message") or reason.get("reason") or reason)
    return str(reason)


# -- the receivers the extension connects ----------------------------------------------------


class AdminMailer:
    """Receivers for the run signals of one app: compose, find the admins, send; never raise."""

    def __init__(self, app: Flask, notifier: Notifier) -> None:
        self.app = app
        self.notifier = notifier

    def connect(self) -> None:
        """Connect to the extension's signals for this app only (weakly: the app's state holds
        this object)."""
        from . import signals

        signals.run_waiting_for_approval.connect(self.on_waiting, sender=self.app)
        signals.run_failed.connect(self.on_failed, sender=self.app)
        signals.run_applied.connect(self.on_applied, sender=self.app)

    def on_waiting(self, sender: Flask, run: SyncRun, changeset: ChangeSet, **_: Any) -> None:
        """A run waits for approval (``held`` when a safeguard holds it)."""
        event = "held" if run.guard_reasons else "waiting"
        self._deliver(event, run, changeset=changeset)

    def on_failed(self, sender: Flask, run: SyncRun, reason: str, **_: Any) -> None:
        """A run ended in Error while processing."""
        self._deliver("failed", run, reason=reason)

    def on_applied(self, sender: Flask, run: SyncRun, changeset: ChangeSet, **_: Any) -> None:
        """A run was applied (auto-approved or approved)."""
        self._deliver("applied", run, changeset=changeset)

    def _deliver(self, event: str, run: SyncRun, **kwargs: Any) -> None:
        from . import runs
        from .extension import get_state

        state = get_state(self.app)
        try:
            summary = None
            if kwargs.get("changeset") is not None:  # the stored index has the summary
                stored = runs.stored_changes(run)
                summary = stored.summary() if stored is not None else None
            notification = compose(event, run, state.config, summary=summary, **kwargs)
            recipients = state.extension.admin_emails(run.org)
            self.notifier.send(recipients, notification)
        except Exception:  # a mail problem must never fail or undo a run
            log.exception("flask-csvdirectory: could not notify the admins of run %s", run.id)
