"""run lifecycle: applied_at, reject reason, revert links

Runs record when their changes were applied (the sync window counts from there), an optional
rejection reason, the revert links both ways and a revert's conflict count. Runs applied before
this revision get ``applied_at = finished_at``, so the window keeps counting them; their stored
change set serves as their applied record (see ``runs._applied_file``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:06:53.148901
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("csvdirectory_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reject_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("applied_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reverts_run_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("reverted_by_run_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("conflict_count", sa.Integer(), nullable=True))

    op.execute(
        "UPDATE csvdirectory_runs SET applied_at = finished_at "
        "WHERE status IN ('Auto-Approved', 'Approved') AND finished_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("csvdirectory_runs", schema=None) as batch_op:
        batch_op.drop_column("conflict_count")
        batch_op.drop_column("reverted_by_run_id")
        batch_op.drop_column("reverts_run_id")
        batch_op.drop_column("applied_at")
        batch_op.drop_column("reject_reason")
