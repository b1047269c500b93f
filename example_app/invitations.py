"""Invitations: a person who gains dashboard access through Users.csv gets an email with a
link to set a password (the CSV import creates their account, but no way to sign in).

The example connects to the extension's ``dashboard_access_granted`` signal and sends the email
through the extension's notifier (the same mail settings). The link is a signed, expiring token
bound to the account's current password hash, so it works once.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from flask_csvdirectory import signals
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import SyncRun

from .models import User, db

log = logging.getLogger(__name__)
#: How long an invitation link works.
MAX_AGE_SECONDS = 7 * 24 * 3600


def _serializer(app: Flask) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="example-set-password")


def _fingerprint(user: User) -> str:
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def invitation_link(app: Flask, user: User) -> str:
    """The set-password link for ``user``, absolute when EXAMPLE_EXTERNAL_URL is set."""
    token = _serializer(app).dumps({"id": user.id, "pw": _fingerprint(user)})
    base = (app.config.get("EXAMPLE_EXTERNAL_URL") or "").rstrip("/")
    return f"{base}/set-password/{token}"


def init_app(app: Flask) -> None:
    """Connect the invitation sender and register the set-password page."""

    def invite(sender: Flask, run: SyncRun, grants: list[signals.AccessGrant], **_: Any) -> None:
        notifier = get_state(app).notifier
        send_mail = getattr(notifier, "send_mail", None)
        if send_mail is None:
            return
        for grant in grants:
            user = db.session.scalar(select(User).where(User.email == grant.email))
            if user is None or user.password_hash:
                continue  # people who can already sign in need no invitation
            try:
                send_mail(
                    [user.email],
                    "You have been invited to the Example Platform dashboard",
                    f"Hello {grant.name or user.email},\n\n"
                    f"You now have {grant.role} access to the Example Platform dashboard.\n"
                    f"Set your password here (the link works for 7 days):\n\n"
                    f"{invitation_link(app, user)}\n",
                )
            except Exception:
                log.exception("could not send the invitation to %s", user.email)

    app.extensions["example_invite"] = invite  # signals hold receivers weakly
    signals.dashboard_access_granted.connect(invite, sender=app)

    @app.route("/set-password/<token>", methods=["GET", "POST"])
    def set_password(token: str) -> Any:
        try:
            data = _serializer(app).loads(token, max_age=MAX_AGE_SECONDS)
        except SignatureExpired:
            abort(410)
        except BadSignature:
            abort(404)
        user = db.session.get(User, int(data["id"]))
        if user is None or _fingerprint(user) != data["pw"]:
            abort(404)  # used already, or another password was set since
        error = None
        if request.method == "POST":
            password = request.form.get("password", "")
            if len(password) < 8:
                error = "Use at least 8 characters."
            elif password != request.form.get("confirm", ""):
                error = "The two passwords differ."
            else:
                user.set_password(password)
                db.session.commit()
                flash("Your password is set: sign in.")
                return redirect(url_for("login"))
        return render_template("set_password.html", user=user, error=error)
