"""Blinker signals for the events a host may care about.

Connect with ``run_applied.connect(handler)``; every signal is sent with the Flask app as sender.
"""

from dataclasses import dataclass

from blinker import Namespace

_signals = Namespace()

#: Sent when an upload was accepted and a run created.
#: Arguments: ``app`` (sender), ``run`` (the :class:`~flask_csvdirectory.models.SyncRun`).
run_created = _signals.signal("csvdirectory-run-created")

#: Sent when a planned run needs an admin's approval.
#: Arguments: ``app`` (sender), ``run``, ``changeset`` (the planned ChangeSet).
run_waiting_for_approval = _signals.signal("csvdirectory-run-waiting-for-approval")

#: Sent after a change set was applied to the directory (auto-approved or approved).
#: Arguments: ``app`` (sender), ``run``, ``changeset``.
run_applied = _signals.signal("csvdirectory-run-applied")

#: Sent when an admin rejected a run. Arguments: ``app`` (sender), ``run``.
run_rejected = _signals.signal("csvdirectory-run-rejected")

#: Sent when a run ended in Error while processing.
#: Arguments: ``app`` (sender), ``run``, ``reason`` (str).
run_failed = _signals.signal("csvdirectory-run-failed")

#: Sent after an applied run gave dashboard access to people who did not have it (they may have
#: no way to sign in yet: a host typically emails them an invitation).
#: Arguments: ``app`` (sender), ``run``, ``grants`` (list of
#: :class:`~flask_csvdirectory.signals.AccessGrant`).
dashboard_access_granted = _signals.signal("csvdirectory-dashboard-access-granted")


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """One person who gained dashboard access: email, name, role and teams (``["*"]``: all)."""

    email: str
    name: str
    role: str
    teams: list[str]
