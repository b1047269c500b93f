"""Baseline: the extension's tables as flask-csvdirectory 0.1.0 created them.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

A database that 0.1.0 made with ``create_all()`` has these tables but no version table;
``flask_csvdirectory.migrations.upgrade`` stamps it with this revision before upgrading.
Timestamps are stored naive UTC (``DateTime``); the models read them back timezone-aware.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "csvdirectory_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(length=255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("approval_threshold", sa.Integer(), nullable=False),
        sa.Column("approval_percent", sa.Float(), nullable=True),
        sa.Column("intake_counter", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csvdirectory_settings")),
        sa.UniqueConstraint("org", name=op.f("uq_csvdirectory_settings_org")),
    )
    op.create_table(
        "csvdirectory_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("uploaded_by_id", sa.String(length=255), nullable=True),
        sa.Column("uploaded_by_name", sa.String(length=255), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("decided_by_id", sa.String(length=255), nullable=True),
        sa.Column("decided_by_name", sa.String(length=255), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("planned_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("users_filename", sa.String(length=255), nullable=False),
        sa.Column("employees_filename", sa.String(length=255), nullable=False),
        sa.Column("users_size", sa.Integer(), nullable=False),
        sa.Column("employees_size", sa.Integer(), nullable=False),
        sa.Column("users_rows", sa.Integer(), nullable=True),
        sa.Column("employees_rows", sa.Integer(), nullable=True),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("change_count", sa.Integer(), nullable=True),
        sa.Column("change_counts", sa.JSON(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("directory_size", sa.Integer(), nullable=True),
        sa.Column("threshold", sa.Integer(), nullable=True),
        sa.Column("threshold_percent", sa.Float(), nullable=True),
        sa.Column("replans", sa.Integer(), nullable=False),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("row_errors", sa.JSON(), nullable=True),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csvdirectory_runs")),
    )
    op.create_index(
        "ix_csvdirectory_runs_org_created", "csvdirectory_runs", ["org", "created_at"]
    )
    op.create_table(
        "csvdirectory_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("purged_at", sa.DateTime(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["csvdirectory_runs.id"],
            name=op.f("fk_csvdirectory_files_run_id_csvdirectory_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csvdirectory_files")),
        sa.UniqueConstraint("run_id", "role", name="uq_csvdirectory_files_run_role"),
    )
    op.create_table(
        "csvdirectory_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csvdirectory_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_csvdirectory_tokens_token_hash")),
    )
    op.create_index(op.f("ix_csvdirectory_tokens_org"), "csvdirectory_tokens", ["org"])
    op.create_table(
        "csvdirectory_idempotency",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csvdirectory_idempotency")),
        sa.UniqueConstraint("org", "key", name="uq_csvdirectory_idempotency_org_key"),
    )


def downgrade() -> None:
    op.drop_table("csvdirectory_idempotency")
    op.drop_index(op.f("ix_csvdirectory_tokens_org"), table_name="csvdirectory_tokens")
    op.drop_table("csvdirectory_tokens")
    op.drop_table("csvdirectory_files")
    op.drop_index("ix_csvdirectory_runs_org_created", table_name="csvdirectory_runs")
    op.drop_table("csvdirectory_runs")
    op.drop_table("csvdirectory_settings")
