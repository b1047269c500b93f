"""Alembic environment of the extension's own tables (run by flask_csvdirectory.migrations)."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from flask_csvdirectory.migrations import VERSION_TABLE, include_object
from flask_csvdirectory.models import UTCDateTime, metadata


def _only_extension_tables(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # the host's tables share the database: never propose changes to them
    return not include_object(obj, name, type_, reflected, compare_to)


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # revisions must not import the models: store UTCDateTime as the plain DateTime it is
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def run_migrations() -> None:
    """Run the migrations on the connection the caller put in ``config.attributes``."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "Run these migrations with 'flask csvdirectory db upgrade' or "
            "flask_csvdirectory.migrations.upgrade(engine), not the alembic command."
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_object=_only_extension_tables,
        render_as_batch=True,  # SQLite alters tables by copying them: batch mode does that
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
