"""SCIM settings, token scopes, the directory's history

Settings get the SCIM switch (off: SCIM is off until an admin turns it on) and the hard-delete
setting (off: DELETE /Users deactivates); tokens get their scopes (existing tokens keep the CSV
API only: an admin creates a SCIM token); ``csvdirectory_history`` is the one history of CSV
runs and SCIM writes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:57:00.256196
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "csvdirectory_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=255), nullable=True),
        sa.Column("actor_name", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("resource_type", sa.String(length=16), nullable=True),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csvdirectory_history")),
    )
    with op.batch_alter_table("csvdirectory_history", schema=None) as batch_op:
        batch_op.create_index("ix_csvdirectory_history_org_at", ["org", "at"], unique=False)

    with op.batch_alter_table("csvdirectory_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scim_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("scim_hard_delete", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("csvdirectory_settings", schema=None) as batch_op:
        batch_op.alter_column("scim_enabled", server_default=None)
        batch_op.alter_column("scim_hard_delete", server_default=None)

    with op.batch_alter_table("csvdirectory_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scopes", sa.String(length=64), nullable=False, server_default="api")
        )
    with op.batch_alter_table("csvdirectory_tokens", schema=None) as batch_op:
        batch_op.alter_column("scopes", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("csvdirectory_tokens", schema=None) as batch_op:
        batch_op.drop_column("scopes")

    with op.batch_alter_table("csvdirectory_settings", schema=None) as batch_op:
        batch_op.drop_column("scim_hard_delete")
        batch_op.drop_column("scim_enabled")

    with op.batch_alter_table("csvdirectory_history", schema=None) as batch_op:
        batch_op.drop_index("ix_csvdirectory_history_org_at")

    op.drop_table("csvdirectory_history")
