"""The two file formats: validation of every cell, duplicates, templates and extra columns."""

from __future__ import annotations

import csv
import io
import unicodedata

import email_validator
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, fields, validate

from flask_csvdirectory.adapter import ExtraColumn
from flask_csvdirectory.errors import ConfigurationError
from flask_csvdirectory.formats import (
    EXAMPLE_ROW_MESSAGE,
    Column,
    FileFormat,
    RoleField,
    TeamScopeField,
    employees_format,
    parse_employees,
    parse_users,
    users_format,
)
from flask_csvdirectory.records import Role
from flask_csvdirectory.rows import EMPLOYEES_FILE, USERS_FILE, EmployeeRow, RowError, UserRow

EMPLOYEES_HEADER = "email,employee_id,first_name,last_name,team,title"
INVALID_EMAIL = "is not a valid email address"


def csv_bytes(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def short(message: str) -> str:
    """An invalid-email message without email-validator's reason (which varies)."""
    return INVALID_EMAIL if message.startswith(INVALID_EMAIL) else message


def places(errors: list[RowError]) -> list[tuple[str, int, str | None, str | None]]:
    return [(e.file, e.line, e.column, e.value) for e in errors]


# -- templates ---------------------------------------------------------------------------------


def test_employees_template_is_the_exact_header_and_an_example_row() -> None:
    assert employees_format().template() == (
        b"email,employee_id,first_name,last_name,team,title\r\n"
        b"ada.lovelace@example.com,E1001,Ada,Lovelace,Engineering,Engineering Manager\r\n"
    )


def test_users_template_is_the_exact_header_and_an_example_row() -> None:
    assert users_format().template() == (
        b"email,name,role,teams\r\n"
        b"grace.hopper@example.com,Grace Hopper,Manager,Engineering;Research\r\n"
    )


@pytest.mark.safeguards
def test_employees_template_example_row_is_an_error_when_uploaded_back() -> None:
    parsed = parse_employees(employees_format().template())
    assert parsed.row_count == 1 and parsed.file == EMPLOYEES_FILE and parsed.rows == []
    assert [(e.file, e.line, e.column, e.message) for e in parsed.errors] == [
        (EMPLOYEES_FILE, 2, "email", EXAMPLE_ROW_MESSAGE)
    ]
    assert EXAMPLE_ROW_MESSAGE == "this is the template's example row; replace it with your data"


@pytest.mark.safeguards
def test_users_template_example_row_is_an_error_when_uploaded_back() -> None:
    parsed = parse_users(users_format().template())
    assert parsed.row_count == 1 and parsed.file == USERS_FILE and parsed.rows == []
    assert [(e.file, e.line, e.column, e.message) for e in parsed.errors] == [
        (USERS_FILE, 2, "email", EXAMPLE_ROW_MESSAGE)
    ]


def test_template_rows_with_another_email_parse_cleanly() -> None:
    employees = employees_format().template().replace(b"ada.lovelace", b"ada.king")
    parsed = parse_employees(employees)
    assert parsed.ok
    assert parsed.rows == [
        EmployeeRow(
            line=2,
            email="ada.king@example.com",
            team="Engineering",
            first_name="Ada",
            last_name="Lovelace",
            title="Engineering Manager",
            employee_id="E1001",
        )
    ]
    users = parse_users(users_format().template().replace(b"grace.hopper", b"grace.h"))
    assert users.ok
    assert users.rows == [
        UserRow(
            line=2,
            email="grace.h@example.com",
            role=Role.MANAGER,
            teams=("Engineering", "Research"),
            name="Grace Hopper",
        )
    ]


def test_formats_describe_their_columns() -> None:
    employees = employees_format()
    assert employees.name == EMPLOYEES_FILE and users_format().name == USERS_FILE
    assert employees.names == tuple(EMPLOYEES_HEADER.split(","))
    assert employees.required_names == ("email", "first_name", "last_name", "team")
    assert users_format().required_names == ("email", "role")
    assert all(column.description and column.example for column in employees.columns)
    assert employees.column("team").required
    with pytest.raises(KeyError):
        employees.column("nope")


# -- extra columns -----------------------------------------------------------------------------


def extras() -> list[ExtraColumn]:
    return [
        ExtraColumn("headcount", fields.Integer(), example="12", description="How many."),
        ExtraColumn("cost_center", example="CC-42"),
    ]


def test_extra_columns_follow_the_standard_ones_in_the_template() -> None:
    template = employees_format(extras()).template()
    header, example_row = list(csv.reader(io.StringIO(template.decode())))
    assert header == [*EMPLOYEES_HEADER.split(","), "headcount", "cost_center"]
    assert example_row[-2:] == ["12", "CC-42"]
    parsed = parse_employees(template.replace(b"ada.lovelace", b"ada.king"), extras())
    assert parsed.ok
    assert parsed.rows[0].extra == {"headcount": "12", "cost_center": "CC-42"}


def test_extra_columns_are_validated_by_their_field() -> None:
    data = csv_bytes(
        "email,first_name,last_name,team,headcount,cost_center",
        "a@x.com,A,B,T,12,CC-1",
        "b@x.com,A,B,T,twelve,CC-2",
        "c@x.com,A,B,T,,",
        "d@x.com,A,B,T,twelve,",
    )
    parsed = parse_employees(data, extras())
    assert places(parsed.errors) == [
        (EMPLOYEES_FILE, 3, "headcount", "twelve"),
        (EMPLOYEES_FILE, 5, "headcount", "twelve"),  # a repeated value is reported again
    ]
    assert parsed.errors[0].message == "Not a valid integer."
    assert [(row.line, row.extra) for row in parsed.rows] == [
        (2, {"headcount": "12", "cost_center": "CC-1"}),
        (4, {"headcount": "", "cost_center": ""}),
    ]


def test_absent_extra_columns_are_left_out_of_extra() -> None:
    parsed = parse_employees(
        csv_bytes("email,first_name,last_name,team", "a@x.com,A,B,T"), extras()
    )
    assert parsed.ok and parsed.rows[0].extra == {}


def test_required_extra_field_makes_its_column_and_cells_required() -> None:
    required = [ExtraColumn("site", fields.String(required=True), example="Paris")]
    assert employees_format(required).column("site").required
    parsed = parse_employees(
        csv_bytes("email,first_name,last_name,team,site", "a@x.com,A,B,T,"), required
    )
    assert places(parsed.errors) == [(EMPLOYEES_FILE, 2, "site", "")]
    assert parsed.errors[0].message == "Missing data for required field."
    missing_column = parse_employees(csv_bytes("email,first_name,last_name,team"), required)
    assert places(missing_column.errors) == [(EMPLOYEES_FILE, 1, "site", None)]


def test_extra_field_returning_text_may_normalise_it() -> None:
    upper = [ExtraColumn("code", fields.String(validate=validate.Length(max=3)))]
    parsed = parse_employees(
        csv_bytes(
            "email,first_name,last_name,team,code", "a@x.com,A,B,T,abc", "b@x.com,A,B,T,abcd"
        ),
        upper,
    )
    assert parsed.rows[0].extra == {"code": "abc"}
    assert places(parsed.errors) == [(EMPLOYEES_FILE, 3, "code", "abcd")]
    assert parsed.errors[0].message == "Longer than maximum length 3."


@pytest.mark.parametrize("name", ["Cost Center", "email", "team"])
def test_badly_named_extra_columns_are_configuration_errors(name: str) -> None:
    with pytest.raises(ConfigurationError):
        employees_format([ExtraColumn(name)])
    with pytest.raises(ConfigurationError):
        employees_format([ExtraColumn("site"), ExtraColumn("site")])


# -- Employees.csv -----------------------------------------------------------------------------


def test_employee_rows_are_typed_and_normalised() -> None:
    data = csv_bytes(
        EMPLOYEES_HEADER,
        " Ada.King@Example.COM ,E1, Ada ,Lovelace,Engineering,",
        "bob@example.com,,Bob,Stone,Sales,Rep",
    )
    parsed = parse_employees(data)
    assert parsed.ok and parsed.row_count == 2 and parsed.error_count == 0
    assert parsed.rows == [
        EmployeeRow(2, "ada.king@example.com", "Engineering", "Ada", "Lovelace", "", "E1"),
        EmployeeRow(3, "bob@example.com", "Sales", "Bob", "Stone", "Rep", None),
    ]


def test_title_is_none_without_the_column_and_blank_clears_it() -> None:
    without = parse_employees(csv_bytes("email,first_name,last_name,team", "a@x.com,A,B,T"))
    blank = parse_employees(csv_bytes("email,first_name,last_name,team,title", "a@x.com,A,B,T,"))
    assert without.rows[0].title is None and without.rows[0].employee_id is None
    assert blank.rows[0].title == ""


def test_invalid_and_missing_cells_are_reported_with_their_place() -> None:
    data = csv_bytes(
        EMPLOYEES_HEADER,
        "not-an-email,E1,Ann,Lee,Sales,",
        ",E2,Bo,Ray,Sales,",
        "c@x.com,E3,,,,",
        "d@x,E4,Di,Lu,Ops,",
    )
    parsed = parse_employees(data)
    assert places(parsed.errors) == [
        (EMPLOYEES_FILE, 2, "email", "not-an-email"),
        (EMPLOYEES_FILE, 3, "email", ""),
        (EMPLOYEES_FILE, 4, "first_name", ""),
        (EMPLOYEES_FILE, 4, "last_name", ""),
        (EMPLOYEES_FILE, 4, "team", ""),
        (EMPLOYEES_FILE, 5, "email", "d@x"),
    ]
    assert [short(e.message) for e in parsed.errors] == [
        INVALID_EMAIL,
        "is empty: every employee needs an email address",
        "is empty: every employee needs a first name",
        "is empty: every employee needs a last name",
        "is empty: every employee needs a team",
        INVALID_EMAIL,
    ]
    assert parsed.rows == [] and parsed.row_count == 4 and parsed.error_count == 6
    assert not parsed.ok


def test_duplicate_emails_name_both_lines() -> None:
    data = csv_bytes(
        EMPLOYEES_HEADER,
        "a@x.com,,Ann,Lee,Sales,",
        "b@x.com,,Bo,Ray,Sales,",
        " A@X.com ,,Ann,Lee,Ops,",
    )
    parsed = parse_employees(data)
    assert places(parsed.errors) == [(EMPLOYEES_FILE, 4, "email", "A@X.com")]
    assert parsed.errors[0].message == (
        "this email is already on line 2: each person must appear once"
    )
    assert [row.line for row in parsed.rows] == [2, 3]


def test_duplicate_employee_ids_name_both_lines_but_blank_ids_may_repeat() -> None:
    data = csv_bytes(
        EMPLOYEES_HEADER,
        "a@x.com,E1,Ann,Lee,Sales,",
        "b@x.com,,Bo,Ray,Sales,",
        "c@x.com,,Cy,Ray,Sales,",
        "d@x.com,E1,Di,Lu,Sales,",
    )
    parsed = parse_employees(data)
    assert places(parsed.errors) == [(EMPLOYEES_FILE, 5, "employee_id", "E1")]
    assert parsed.errors[0].message == (
        "this employee_id is already on line 2: each ID must be unique"
    )


def test_a_row_with_a_bad_cell_still_claims_its_email() -> None:
    data = csv_bytes(EMPLOYEES_HEADER, "a@x.com,,Ann,Lee,,", "a@x.com,,Ann,Lee,Sales,")
    parsed = parse_employees(data)
    assert places(parsed.errors) == [
        (EMPLOYEES_FILE, 2, "team", ""),
        (EMPLOYEES_FILE, 3, "email", "a@x.com"),
    ]


def test_every_error_is_reported_up_to_the_cap_and_all_are_counted() -> None:
    lines = [EMPLOYEES_HEADER] + [f"bad{n},,,Lee,Sales," for n in range(50)]
    parsed = parse_employees(csv_bytes(*lines), max_errors=7)
    assert parsed.error_count == 100  # email and first_name on each row
    assert len(parsed.errors) == 7
    assert places(parsed.errors)[:3] == [
        (EMPLOYEES_FILE, 2, "email", "bad0"),
        (EMPLOYEES_FILE, 2, "first_name", ""),
        (EMPLOYEES_FILE, 3, "email", "bad1"),
    ]
    assert parsed.row_count == 50
    assert parse_employees(csv_bytes(*lines)).error_count == 100


def test_header_errors_keep_checking_the_cells_that_can_be_checked() -> None:
    data = csv_bytes("email,first_name,team,department", "bad,Ann,Sales,X", "b@x.com,Bo,Ops,Y")
    parsed = parse_employees(data)
    assert places(parsed.errors) == [
        (EMPLOYEES_FILE, 1, "department", None),
        (EMPLOYEES_FILE, 1, "last_name", None),
        (EMPLOYEES_FILE, 2, "email", "bad"),
    ]
    assert parsed.rows == [] and parsed.row_count == 2


def test_structure_errors_come_through_with_the_file_name() -> None:
    data = csv_bytes(EMPLOYEES_HEADER, "a@x.com,,Ann,Lee", 'b@x.com,,"Bo', "x,y")
    parsed = parse_employees(data)
    assert places(parsed.errors) == [
        (EMPLOYEES_FILE, 2, None, None),
        (EMPLOYEES_FILE, 3, None, None),
    ]
    assert parsed.row_count == 2


def test_encoding_error_is_the_only_error_and_rows_are_still_counted() -> None:
    data = "email,first_name,last_name,team\nj@x.com,José,Núñez,Ventes\nk@x.com,K,L,M\n"
    parsed = parse_employees(data.encode("cp1252"))
    assert places(parsed.errors) == [(EMPLOYEES_FILE, 2, None, None)]
    assert "windows-1252" in parsed.errors[0].message
    assert parsed.rows == [] and parsed.row_count == 2 and parsed.error_count == 1


def test_semicolon_utf16_excel_file_is_read() -> None:
    text = "Email;First Name;Last Name;Team;Title\r\nzoë@x.com;Zoë;Ålund;Nord;Chef, équipe\r\n"
    parsed = parse_employees(text.encode("utf-16"))
    assert parsed.ok
    assert parsed.rows == [EmployeeRow(2, "zoë@x.com", "Nord", "Zoë", "Ålund", "Chef, équipe")]


def test_multiline_cells_keep_line_numbers_in_cell_errors() -> None:
    data = csv_bytes(
        EMPLOYEES_HEADER, 'a@x.com,,Ann,Lee,Sales,"Head of', 'Sales"', "bad,,Bo,Ray,Ops,"
    )
    parsed = parse_employees(data)
    # a line break is a control character: refused in a title, on the line the record starts
    assert places(parsed.errors) == [
        (EMPLOYEES_FILE, 2, "title", "Head of\r\nSales"),
        (EMPLOYEES_FILE, 4, "email", "bad"),
    ]
    assert "U+000D" in parsed.errors[0].message


# -- Users.csv ---------------------------------------------------------------------------------


def test_users_roles_and_scopes() -> None:
    data = csv_bytes(
        "Email,Name,Role,Teams",
        "Root@X.com,Root,ADMIN,Sales",
        "m1@x.com,,manager, Sales ;Ops;sales;;",
        "m2@x.com,M Two,Manager,*",
        "m3@x.com,,Manager,Ops;*",
    )
    parsed = parse_users(data)
    assert parsed.ok
    assert parsed.rows == [
        UserRow(2, "root@x.com", Role.ADMIN, ("*",), "Root"),
        UserRow(3, "m1@x.com", Role.MANAGER, ("Ops", "Sales"), ""),
        UserRow(4, "m2@x.com", Role.MANAGER, ("*",), "M Two"),
        UserRow(5, "m3@x.com", Role.MANAGER, ("*",), ""),
    ]


def test_users_without_a_teams_column_can_be_admins() -> None:
    parsed = parse_users(csv_bytes("email,role", "a@x.com,Admin"))
    assert parsed.ok and parsed.rows[0].teams == ("*",)


def test_user_errors_are_reported_with_their_place() -> None:
    data = csv_bytes(
        "email,name,role,teams",
        "a@x.com,,Boss,Sales",
        "b@x.com,,,Sales",
        "c@x.com,,Manager,",
        "d@x.com,,Manager, ; ",
        "nope,,Admin,",
        "A@x.com,,Admin,",
    )
    parsed = parse_users(data)
    assert places(parsed.errors) == [
        (USERS_FILE, 2, "role", "Boss"),
        (USERS_FILE, 3, "role", ""),
        (USERS_FILE, 4, "teams", ""),
        (USERS_FILE, 5, "teams", ";"),
        (USERS_FILE, 6, "email", "nope"),
        (USERS_FILE, 7, "email", "A@x.com"),
    ]
    assert [short(e.message) for e in parsed.errors] == [
        "is not a role: write Admin or Manager",
        "is empty: write Admin or Manager",
        "is empty: a Manager needs at least one team (names separated by ';', or * for every team)",
        "is empty: a Manager needs at least one team (names separated by ';', or * for every team)",
        INVALID_EMAIL,
        "this email is already on line 2: each user must appear once",
    ]
    assert parsed.rows == [] and parsed.row_count == 6


def test_manager_without_a_teams_column_is_an_error() -> None:
    parsed = parse_users(csv_bytes("email,role", "a@x.com,Admin", "m@x.com,Manager"))
    assert places(parsed.errors) == [(USERS_FILE, 3, "teams", None)]
    assert "the file has no teams column" in parsed.errors[0].message
    assert [row.email for row in parsed.rows] == ["a@x.com"]


def test_users_missing_required_columns() -> None:
    parsed = parse_users(csv_bytes("email,teams", "a@x.com,Sales"))
    assert places(parsed.errors) == [(USERS_FILE, 1, "role", None)]
    assert parsed.rows == [] and parsed.row_count == 1


# -- fields and the fast paths -----------------------------------------------------------------


def test_role_field_is_case_insensitive_and_says_what_is_allowed() -> None:
    field = RoleField()
    assert field.deserialize(" aDmIn ") is Role.ADMIN
    assert field.deserialize("Manager") is Role.MANAGER
    with pytest.raises(ValidationError, match="Must be one of: Admin, Manager."):
        field.deserialize("Owner")


@pytest.mark.parametrize(
    ("cell", "teams"),
    [
        ("Sales", ("Sales",)),
        (" Sales ; Ops ;; ", ("Ops", "Sales")),
        ("ops;OPS;Ops", ("ops",)),
        ("Zeta;Alpha  Team;alpha team", ("Alpha  Team", "Zeta")),
        ("*", ("*",)),
        ("Sales; * ", ("*",)),
        (" ; ", ()),
    ],
)
def test_team_scope_field(cell: str, teams: tuple[str, ...]) -> None:
    assert TeamScopeField().deserialize(cell) == teams


def email_verdict(value: str) -> bool:
    """email-validator's verdict (syntax only, strict lengths), after refusing compatibility
    variants such as the Kelvin sign, which the validation module refuses as look-alikes."""
    if unicodedata.normalize("NFKC", value) != unicodedata.normalize("NFC", value):
        return False
    try:
        email_validator.validate_email(value, check_deliverability=False, strict=True)
    except email_validator.EmailNotValidError:
        return False
    return True


def email_cells(value: str) -> bytes:
    quoted = '"' + value.replace('"', '""') + '"'
    return f"email,role\r\n{quoted},Admin\r\n".encode()


EMAIL_ALPHABET = st.sampled_from(list("aZ09.-_+@!#$%&'*/=?^`{|}~\"[]() \\:;,é\u00e9\u0130\u212a"))


@given(st.text(EMAIL_ALPHABET, min_size=1, max_size=30))
@example("a@b.co")
@example("a..b@x.com")
@example(".a@x.com")
@example("a@x.c")
@example("a@localhost")
@example("a@[10.0.0.1]")
@example('"john doe"@x.com')
@example("jos\u00e9@b\u00fccher.de")
@example("a@-x.com")
@example("a@x-.com")
@example("a@x.toolongtld")
@example("a@x.123")
@example("a@@x.com")
@example("a@x.com\n")
@settings(deadline=None)  # the first call loads email-validator's data
def test_email_validation_is_email_validators(value: str) -> None:
    value = value.strip()
    if not value:
        return
    parsed = parse_users(email_cells(value))
    assert parsed.ok is email_verdict(value), (value, parsed.errors)


@given(
    st.from_regex(
        r"[A-Za-z0-9._%+-]{1,12}@(?:[A-Za-z0-9-]{1,8}\.){1,3}[A-Za-z0-9-]{1,8}", fullmatch=True
    )
)
@settings(deadline=None)
def test_email_validation_is_email_validators_on_address_like_values(value: str) -> None:
    parsed = parse_users(email_cells(value))
    assert parsed.ok is email_verdict(value), (value, parsed.errors)


def test_a_custom_format_can_be_templated() -> None:
    custom = FileFormat("X.csv", (Column("a", fields.String(), example='say "hi", ok'),))
    assert custom.template() == b'a\r\n"say ""hi"", ok"\r\n'
