"""guards and structural count

Runs keep their structural change count and the guards' reasons; settings get the destructive-
change guard's limits. Existing organizations get the defaults (10 %, 25 people): the guard is on
by default, and NULL would mean "off".

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:48:45.419873
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("csvdirectory_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("structural_change_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("guard_reasons", sa.JSON(), nullable=True))

    with op.batch_alter_table("csvdirectory_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guard_removal_percent", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("guard_removal_people", sa.Integer(), nullable=True))

    op.execute(
        "UPDATE csvdirectory_settings SET guard_removal_percent = 10, guard_removal_people = 25"
    )


def downgrade() -> None:
    with op.batch_alter_table("csvdirectory_settings", schema=None) as batch_op:
        batch_op.drop_column("guard_removal_people")
        batch_op.drop_column("guard_removal_percent")

    with op.batch_alter_table("csvdirectory_runs", schema=None) as batch_op:
        batch_op.drop_column("guard_reasons")
        batch_op.drop_column("structural_change_count")
