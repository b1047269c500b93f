"""The reference adapter on a host shaped differently from the example platform: several
organizations in one table, an extra column, other attribute names, no title."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from marshmallow import fields, validate
from sqlalchemy import Boolean, Column, ForeignKey, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flask_csvdirectory import (
    AccessMapping,
    ExtraColumn,
    PersonMapping,
    Role,
    SQLAlchemyDirectoryAdapter,
)
from flask_csvdirectory.pipeline import build_plan
from flask_csvdirectory.rows import EMPLOYEES_FILE

from .factories import to_csv, users_csv


class Base(DeclarativeBase):
    pass


scope = Table(
    "acme_scope",
    Base.metadata,
    Column("member_id", ForeignKey("acme_members.pk"), primary_key=True),
    Column("group_id", ForeignKey("acme_groups.pk"), primary_key=True),
)


class Group(Base):
    __tablename__ = "acme_groups"
    pk: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(100))


class Member(Base):
    __tablename__ = "acme_members"
    pk: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(20))
    mail: Mapped[str] = mapped_column(String(200))
    given: Mapped[str] = mapped_column(String(100), default="")
    family: Mapped[str] = mapped_column(String(100), default="")
    staff_no: Mapped[str | None] = mapped_column(String(20), nullable=True)
    group_pk: Mapped[int | None] = mapped_column(ForeignKey("acme_groups.pk"), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    level: Mapped[int] = mapped_column(default=0)  # 0 none, 1 manager, 2 admin
    everywhere: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_center: Mapped[str] = mapped_column(String(20), default="")
    groups: Mapped[list[Group]] = relationship(secondary=scope)


@pytest.fixture
def adapter(tmp_path) -> Iterator[SQLAlchemyDirectoryAdapter]:  # type: ignore[no-untyped-def]
    app = Flask("acme")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'acme.sqlite3'}"
    db = SQLAlchemy(model_class=Base)
    db.init_app(app)
    adapter = SQLAlchemyDirectoryAdapter(
        db,
        person_model=Member,
        team_model=Group,
        person=PersonMapping(
            email="mail", first_name="given", last_name="family", title=None,
            external_id="staff_no", team_id="group_pk", active="enabled",
            extra={"cost_center": "cost_center"},
        ),
        access=AccessMapping(
            role="level", role_values={Role.ADMIN: 2, Role.MANAGER: 1}, no_access=0,
            all_teams="everywhere", scope="groups",
        ),
        team_name="label",
        org_attribute="tenant",
        extra_columns=[
            ExtraColumn(
                "cost_center",
                fields.String(validate=validate.Regexp(r"^CC-\d+$")),
                example="CC-100",
            )
        ],
    )
    with app.app_context():
        db.create_all()
        yield adapter
        db.session.remove()
        db.engine.dispose()


def employees(*rows: tuple[str, str, str]) -> bytes:
    header = ["email", "employee_id", "first_name", "last_name", "team", "cost_center"]
    return to_csv(
        header, [[email, f"S{n}", "F", "L", team, cc] for n, (email, team, cc) in enumerate(rows)]
    )


def sync(adapter: SQLAlchemyDirectoryAdapter, org: str, data: bytes, users: bytes) -> int:
    outcome = build_plan(users, data, adapter.snapshot(org), extra_columns=adapter.extra_columns)
    adapter.apply(org, outcome.changeset)
    return outcome.changeset.count


def test_organizations_are_separate_and_extra_columns_round_trip(
    adapter: SQLAlchemyDirectoryAdapter,
) -> None:
    boss = users_csv([{"email": "boss@acme.example", "role": "Admin", "teams": "*"}])
    other_boss = users_csv([{"email": "chief@other.example", "role": "Admin", "teams": "*"}])
    sync(adapter, "acme", employees(("a@acme.example", "Red", "CC-1")), boss)
    sync(adapter, "other", employees(("a@other.example", "Red", "CC-2")), other_boss)

    acme = adapter.snapshot("acme")
    assert {p.email for p in acme.people} == {"a@acme.example", "boss@acme.example"}
    assert [t.name for t in acme.teams] == ["Red"]  # each tenant has its own "Red"
    assert acme.by_email["a@acme.example"].extra == {"cost_center": "CC-1"}
    assert acme.by_email["a@acme.example"].title == ""  # the host has no title
    assert {a.email: a.role for a in acme.access} == {"boss@acme.example": Role.ADMIN}
    other = adapter.snapshot("other")
    assert {p.email for p in other.people} == {"a@other.example", "chief@other.example"}
    assert other.teams[0].key != acme.teams[0].key

    # an extra column change is planned and applied; the other tenant is untouched
    assert sync(adapter, "acme", employees(("a@acme.example", "Red", "CC-9")), boss) == 1
    assert adapter.snapshot("acme").by_email["a@acme.example"].extra == {"cost_center": "CC-9"}
    assert adapter.snapshot("other").by_email["a@other.example"].extra == {"cost_center": "CC-2"}
    assert sync(adapter, "acme", employees(("a@acme.example", "Red", "CC-9")), boss) == 0


def test_extra_column_is_validated_and_in_the_template(
    adapter: SQLAlchemyDirectoryAdapter,
) -> None:
    from flask_csvdirectory import FileValidationError, formats

    template = formats.employees_format(adapter.extra_columns).template().decode()
    assert template.splitlines()[0].endswith(",cost_center")
    assert "CC-100" in template.splitlines()[1]
    boss = users_csv([{"email": "boss@acme.example", "role": "Admin", "teams": "*"}])
    with pytest.raises(FileValidationError) as bad:
        sync(adapter, "acme", employees(("a@acme.example", "Red", "nope")), boss)
    [error] = bad.value.errors
    assert (error.file, error.line, error.column, error.value) == (
        EMPLOYEES_FILE, 2, "cost_center", "nope"
    )



def test_new_scim_ids_are_distinct_random_uuid4s() -> None:
    import uuid

    from flask_csvdirectory.adapters.sqlalchemy import new_scim_ids

    ids = new_scim_ids(5000)
    assert len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
    assert new_scim_ids(0) == []
