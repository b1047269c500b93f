"""stored files kept uncompressed on PostgreSQL

The encrypted contents of ``csvdirectory_files`` (Fernet tokens) do not compress, yet
PostgreSQL's default storage for ``bytea`` tries to compress every value over 2 kB before it
gives up and stores it out of line: writing an 8 MB file cost about 0.6 s instead of 0.2 s.
``STORAGE EXTERNAL`` stores the values out of line without trying. PostgreSQL only (other
databases have no such setting); nothing is rewritten: existing values stay as they are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 14:55:00.000000
"""

from __future__ import annotations

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE csvdirectory_files ALTER COLUMN ciphertext SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE csvdirectory_files ALTER COLUMN ciphertext SET STORAGE EXTENDED")
