"""flask-csvdirectory: directory integration by CSV import for Flask platforms."""

from .adapter import DirectoryAdapter, ExtraColumn, FieldLimit
from .adapters.sqlalchemy import (
    AccessMapping,
    PersonMapping,
    SQLAlchemyDirectoryAdapter,
    TeamMapping,
)
from .changes import Change, ChangeKind, ChangeSet
from .errors import (
    ApplyError,
    ConfigurationError,
    CSVDirectoryError,
    FileTooLarge,
    FileValidationError,
    IntakeRefused,
    IntegrationDisabled,
    MissingFile,
    RevertUnavailable,
    RunInProgress,
    RunNotFound,
    RunStateError,
    WindowClosed,
)
from .extension import CSVDirectory, get_state
from .models import Channel, RunStatus, SyncRun
from .query import Page, Query
from .records import (
    ALL_TEAMS,
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
    TeamRecord,
)
from .runs import Actor, Upload
from .signals import (
    run_applied,
    run_created,
    run_failed,
    run_rejected,
    run_waiting_for_approval,
)
from .versions import directory_changed

__all__ = [
    "ALL_TEAMS",
    "AccessMapping",
    "AccessRecord",
    "Actor",
    "ApplyError",
    "CSVDirectory",
    "CSVDirectoryError",
    "Change",
    "ChangeKind",
    "ChangeSet",
    "Channel",
    "ConfigurationError",
    "DirectoryAdapter",
    "DirectorySnapshot",
    "ExtraColumn",
    "FieldLimit",
    "FileTooLarge",
    "FileValidationError",
    "IntakeRefused",
    "IntegrationDisabled",
    "MissingFile",
    "PersonMapping",
    "Page",
    "PersonRecord",
    "Query",
    "RevertUnavailable",
    "Role",
    "RunInProgress",
    "RunNotFound",
    "RunStateError",
    "RunStatus",
    "SQLAlchemyDirectoryAdapter",
    "SyncRun",
    "TeamMapping",
    "TeamRecord",
    "Upload",
    "WindowClosed",
    "directory_changed",
    "get_state",
    "run_applied",
    "run_created",
    "run_failed",
    "run_rejected",
    "run_waiting_for_approval",
]
