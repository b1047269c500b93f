"""directory versions

``csvdirectory_directory_versions``: a counter per organization that every write to the
directory moves on in its own transaction. The reference adapter keys its caches of totals and
page positions by it, so a SCIM list's ``totalResults`` and a deep ``startIndex`` no longer
read the whole directory. No row means version 0: nothing to fill in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 17:24:21.683316
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "csvdirectory_directory_versions",
        sa.Column("org", sa.String(length=255), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org", name=op.f("pk_csvdirectory_directory_versions")),
    )


def downgrade() -> None:
    op.drop_table("csvdirectory_directory_versions")
