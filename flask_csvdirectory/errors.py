"""Errors raised by flask-csvdirectory. All derive from :class:`CSVDirectoryError`.

Errors that refuse a request also subclass the matching werkzeug HTTP exception, so the web layer
returns the right status without translating them, and hosts can catch them either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from werkzeug.exceptions import (
    BadRequest,
    Conflict,
    NotFound,
    RequestEntityTooLarge,
    TooManyRequests,
)

if TYPE_CHECKING:
    from .rows import RowError


class CSVDirectoryError(Exception):
    """Base class of every error this extension raises."""


class ConfigurationError(CSVDirectoryError, RuntimeError):
    """The extension is mis-configured or used before ``init_app``."""


class IntakeRefused(CSVDirectoryError):
    """An upload was refused before anything started; ``code`` names the reason for scripts."""

    code_name = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.description = message


class MissingFile(IntakeRefused, BadRequest):  # type: ignore[misc]  # werkzeug types description per class
    """One of the two files (Users.csv, Employees.csv) is missing: nothing starts."""

    code_name = "missing_file"


class FileTooLarge(IntakeRefused, RequestEntityTooLarge):  # type: ignore[misc]  # werkzeug types description per class
    """An uploaded file is over ``CSVDIRECTORY_MAX_UPLOAD_BYTES``."""

    code_name = "file_too_large"


class IntegrationDisabled(IntakeRefused, Conflict):  # type: ignore[misc]  # werkzeug types description per class
    """The organization has not enabled the CSV integration."""

    code_name = "integration_disabled"


class WindowClosed(IntakeRefused, TooManyRequests):  # type: ignore[misc]  # werkzeug types description per class
    """Another upload+sync ran less than the minimum interval ago; ``opens_at`` says when."""

    code_name = "window_closed"

    def __init__(self, message: str, opens_at: datetime) -> None:
        super().__init__(message)
        self.opens_at = opens_at


class RunInProgress(IntakeRefused, Conflict):  # type: ignore[misc]  # werkzeug types description per class
    """Another run of the organization is still open (File Processing, Waiting for Approval,
    or approved and applying): one open run per organization. ``run_id`` names it."""

    code_name = "run_in_progress"

    def __init__(self, message: str, run_id: str, status_label: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status_label = status_label


class RunNotFound(CSVDirectoryError, NotFound):
    """No run with that id in this organization."""

    code_name = "not_found"

    def __init__(self, message: str = "No such import run.") -> None:
        super().__init__(message)
        self.description = message


class RunStateError(CSVDirectoryError, Conflict):
    """The run is not in a state that allows this action (approving a finished run, ...)."""

    code_name = "invalid_state"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.description = message


class PlanReplaced(RunStateError):
    """The run was re-planned while its change set was being read (an approval found the
    directory changed): the pages read so far belong to the old plan. Reload to see the new one."""

    code_name = "plan_replaced"

    def __init__(self) -> None:
        super().__init__(
            "This run was re-planned while its changes were being read; reload to see the new plan."
        )


class RevertUnavailable(RunStateError):
    """This run cannot be reverted; the message says why (not applied, already reverted,
    its before-values purged by the retention period, ...)."""

    code_name = "revert_unavailable"


class ApplyError(CSVDirectoryError):
    """Applying a change set failed; the adapter rolled everything back."""


class FileValidationError(CSVDirectoryError, BadRequest):
    """The files have errors; nothing was applied. ``errors`` lists them (file, line, column)."""

    code_name = "invalid_files"

    def __init__(self, errors: list[RowError], error_count: int | None = None) -> None:
        self.errors = list(errors)
        self.error_count = error_count if error_count is not None else len(self.errors)
        first = str(self.errors[0]) if self.errors else "invalid files"
        more = self.error_count - 1
        message = first + (f" (and {more} more error{'s' if more != 1 else ''})" if more else "")
        super().__init__(message)
        self.description = message
