"""The CSV reader: encodings, delimiters, header, blank lines, quotes and line numbers."""

from __future__ import annotations

import codecs
import tracemalloc

import pytest

from flask_csvdirectory.reader import ErrorLog, normalize_header, read_table
from flask_csvdirectory.rows import RowError

FILE = "People.csv"
COLUMNS = ("email", "first_name", "last_name", "team")
REQUIRED = ("email", "team")


def read(data: bytes, *, max_errors: int = 1000, columns=COLUMNS, required=REQUIRED):
    """Read ``data`` completely: (table, records, log)."""
    log = ErrorLog(FILE, max_errors)
    table = read_table(data, log, columns=columns, required=required)
    records = list(table)
    return table, records, log


def only_error(log: ErrorLog) -> RowError:
    assert log.count == 1, log.errors
    return log.errors[0]


# -- encodings ---------------------------------------------------------------------------------


def test_plain_utf8_is_read() -> None:
    table, records, log = read(b"email,team\na@x.com,Sales\nb@x.com,R\xc3\xa9seau\n")
    assert log.count == 0
    assert table.readable and table.columns == ("email", "team")
    assert records == [(2, ("a@x.com", "Sales")), (3, ("b@x.com", "Réseau"))]
    assert table.row_count == 2


def test_utf8_bom_is_dropped_from_the_first_header_name() -> None:
    table, records, log = read(codecs.BOM_UTF8 + "email,team\na@x.com,Réseau\n".encode())
    assert log.count == 0
    assert table.columns == ("email", "team")
    assert table.position("email") == 0
    assert records == [(2, ("a@x.com", "Réseau"))]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom_is_read(codec: str) -> None:
    text = "email\tteam\r\nzoë@x.com\tÉquipe Nord\r\n"
    data = text.encode(codec)
    if codec != "utf-16":  # add the byte-order mark Excel writes
        data = (codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE) + data
    table, records, log = read(data)
    assert log.count == 0
    assert table.columns == ("email", "team") and table.delimiter == "\t"
    assert records == [(2, ("zoë@x.com", "Équipe Nord"))]


def test_windows_1252_file_is_refused_with_line_offset_and_hint() -> None:
    data = "email,first_name,team\na@x.com,Ann,Sales\nj@x.com,José,Ventes – Paris\n".encode(
        "cp1252"
    )
    table, records, log = read(data)
    error = only_error(log)
    offset = data.index(b"\xe9")
    assert (error.file, error.line, error.column, error.value) == (FILE, 3, None, None)
    assert f"byte 0xE9 at byte offset {offset}" in error.message
    assert "not valid UTF-8" in error.message
    assert "This looks like windows-1252." in error.message
    assert 'Save it as "CSV UTF-8' in error.message
    assert not table.readable and records == []
    assert table.row_count == 2  # still counted, best effort


def test_latin1_file_is_refused_never_misdecoded() -> None:
    data = "email,team\nf@x.com,Fran\xe7ois\n".encode("latin-1")
    table, records, log = read(data)
    error = only_error(log)
    offset = data.index(bytes([0xE7]))
    assert error.line == 2
    assert f"byte 0xE7 at byte offset {offset}" in error.message
    assert records == []


def test_bad_byte_after_a_large_valid_utf8_prefix_has_an_exact_offset() -> None:
    # Past the 1 MiB validation chunk and after multi-byte characters.
    body = "é@x.com,Équipe\n".encode() * 80_000
    data = b"email,team\n" + body + b"k@x.com,\x92\n"
    _, _, log = read(data)
    error = only_error(log)
    assert error.line == 80_002
    assert f"byte 0x92 at byte offset {len(data) - 2}" in error.message


def test_truncated_utf8_sequence_at_the_end_is_refused() -> None:
    data = b"email,team\na@x.com,Caf\xc3"
    _, _, log = read(data)
    error = only_error(log)
    assert error.line == 2
    assert f"byte 0xC3 at byte offset {len(data) - 1}" in error.message


def test_truncated_utf16_is_refused() -> None:
    data = "email,team\na@x.com,Sales\n".encode("utf-16") + b"\x41"
    _, _, log = read(data)
    error = only_error(log)
    assert "not valid UTF-16" in error.message
    assert f"byte offset {len(data) - 1}" in error.message


def test_utf32_is_refused() -> None:
    _, records, log = read("email,team\na@x.com,S\n".encode("utf-32"))
    error = only_error(log)
    assert (error.line, error.column) == (1, None)
    assert "UTF-32" in error.message and "CSV UTF-8" in error.message
    assert records == []


# -- NUL ---------------------------------------------------------------------------------------


def test_nul_byte_in_a_cell_names_line_and_column() -> None:
    data = b"email,first_name,team\na@x.com,Ann,Sales\nb@x.com,Bo\x00b,Sales\n"
    table, records, log = read(data)
    error = only_error(log)
    assert (error.file, error.line, error.column) == (FILE, 3, "first_name")
    assert "NUL character (character 11 of the line)" in error.message
    assert records == [] and table.row_count == 2


def test_nul_byte_in_the_header_names_line_1() -> None:
    _, _, log = read(b"email,te\x00am\na@x.com,Sales\n")
    error = only_error(log)
    assert (error.line, error.column) == (1, None)
    assert "character 9 of the line" in error.message


def test_utf16_without_bom_is_refused_not_read_as_utf8() -> None:
    _, records, log = read("email,team\r\na@x.com,Sales\r\n".encode("utf-16-le"))
    error = only_error(log)
    assert error.line == 1 and "NUL" in error.message
    assert records == []


# -- delimiters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [("email,team", ","), ("email;team", ";"), ("email\tteam", "\t"), ("email", ",")],
)
def test_delimiter_is_detected_from_the_header(header: str, delimiter: str) -> None:
    columns = header.split(delimiter) if delimiter in header else [header]
    data = f"{header}\n{delimiter.join('a@x.com' for _ in columns)}\n".encode()
    table, records, log = read(data, required=("email",))
    assert log.count == 0
    assert table.delimiter == delimiter
    assert records == [(2, tuple("a@x.com" for _ in columns))]


def test_semicolon_file_keeps_commas_inside_cells() -> None:
    data = b'\n"email";first_name;team\na@x.com;Smith, Ann;"Sales; EMEA"\n'
    table, records, log = read(data)
    assert log.count == 0 and table.delimiter == ";" and table.header_line == 2
    assert records == [(3, ("a@x.com", "Smith, Ann", "Sales; EMEA"))]


def test_delimiters_inside_quoted_header_names_do_not_count() -> None:
    table, _, _ = read(b'"a;b;c;d",email,team\n', columns=("a;b;c;d", "email", "team"))
    assert table.delimiter == ","
    assert table.columns == ("a;b;c;d", "email", "team")


# -- header ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("First Name", "first_name"),
        ("  FIRST   NAME ", "first_name"),
        ("first-name", "first_name"),
        ("First _- Name", "first_name"),
        ("EMAIL", "email"),
        ("\ufeffemail", "email"),
        ("employee_id", "employee_id"),
    ],
)
def test_header_names_are_normalised(written: str, normalised: str) -> None:
    assert normalize_header(written) == normalised


def test_header_is_matched_case_and_space_insensitively() -> None:
    table, records, log = read(b" Email , First Name,LAST-NAME,TEAM\na@x.com,Ann,Lee,Sales\n")
    assert log.count == 0
    assert table.columns == COLUMNS
    assert [table.position(name) for name in COLUMNS] == [0, 1, 2, 3]
    assert records == [(2, ("a@x.com", "Ann", "Lee", "Sales"))]


def test_duplicate_header_is_an_error_and_the_column_is_unusable() -> None:
    _, _, log = read(b"email,First Name,team,first_name\n")
    table = read_table(b"email,First Name,team,first_name\n", ErrorLog(FILE), columns=COLUMNS)
    error = only_error(log)
    assert (error.file, error.line, error.column, error.value) == (FILE, 1, "first_name", None)
    assert error.message == (
        "this column appears more than once in the header: "
        "columns 2 ('First Name'), 4 ('first_name')"
    )
    assert table.position("first_name") is None and table.position("team") == 2


def test_unknown_column_is_an_error_naming_it_with_a_suggestion() -> None:
    table, records, log = read(b"email,E-Mail Address,team,firstname\na@x.com,x,S,y\n")
    assert [(e.line, e.column) for e in log.errors] == [(1, "E-Mail Address"), (1, "firstname")]
    assert log.errors[0].message == (
        "unknown column; the known columns are email, first_name, last_name, team"
    )
    assert log.errors[1].message.startswith("unknown column (did you mean 'first_name'?)")
    assert records == [(2, ("a@x.com", "x", "S", "y"))]  # known columns stay usable
    assert table.position("email") == 0 and table.position("e_mail_address") is None


def test_missing_required_columns_are_errors_on_line_1() -> None:
    _, _, log = read(b"first_name,last_name\nAnn,Lee\n")
    assert [(e.line, e.column, e.value) for e in log.errors] == [
        (1, "email", None),
        (1, "team", None),
    ]
    assert (
        log.errors[0].message == "required column is missing; the header must include email, team"
    )


def test_data_instead_of_a_header_is_explained() -> None:
    _, _, log = read(b"a@x.com,Sales\n")
    assert any(
        e.column == "email" and "is the first line the header?" in e.message for e in log.errors
    )


def test_unnamed_header_column_is_an_error_but_trailing_ones_are_ignored() -> None:
    table, _, log = read(b"email,,team,,\n")
    error = only_error(log)
    assert (error.line, error.column, error.message) == (
        1,
        None,
        "column 2 of the header has no name",
    )
    assert table.columns == ("email", "", "team")


def test_empty_file_is_an_error() -> None:
    for data in (b"", b"\n\n  \n", codecs.BOM_UTF8):
        table, records, log = read(data)
        error = only_error(log)
        assert error.line == 1
        assert error.message == (
            "the file is empty: its first line must be the header email,first_name,last_name,team"
        )
        assert records == [] and table.row_count == 0


def test_header_only_file_has_no_records_and_no_error() -> None:
    table, records, log = read(b"email,team\r\n")
    assert log.count == 0 and records == [] and table.row_count == 0


# -- records -----------------------------------------------------------------------------------


def test_blank_lines_are_ignored_and_lines_stay_physical() -> None:
    data = b"\n  \nemail,team\n\n,\n , ,\n\t\na@x.com,Sales\n \t , \n\nb@x.com,R&D\n\n"
    table, records, log = read(data)
    assert log.count == 0
    assert table.header_line == 3
    assert records == [(8, ("a@x.com", "Sales")), (11, ("b@x.com", "R&D"))]
    assert table.row_count == 2


def test_stray_whitespace_is_trimmed_inside_and_outside_quotes() -> None:
    data = 'email,team\n  a@x.com\u00a0 ,   "  Sales  "\n'.encode()
    _, records, log = read(data)
    assert log.count == 0
    assert records == [(2, ("a@x.com", "Sales"))]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_multiline_cells_report_the_line_where_the_record_starts(newline: str) -> None:
    lines = [
        "email,team",
        'a@x.com,"Sales',
        "EMEA",
        'North"',
        "b@x.com,Ops",
        "",
        'c@x.com,"R',
        'D"',
        "d@x.com,IT",
    ]
    _, records, log = read(newline.join(lines).encode())
    assert log.count == 0
    assert [(line, cells[0]) for line, cells in records] == [
        (2, "a@x.com"),
        (5, "b@x.com"),
        (7, "c@x.com"),
        (9, "d@x.com"),
    ]
    assert records[0][1][1] == f"Sales{newline}EMEA{newline}North"


def test_quote_left_open_until_the_end_is_an_error_at_its_line() -> None:
    data = b'email,team\na@x.com,Sales\nb@x.com,"Ops\nc@x.com,IT\nd@x.com,HR\n'
    table, records, log = read(data)
    error = only_error(log)
    assert (error.file, error.line, error.column, error.value) == (FILE, 3, None, None)
    assert error.message == "a quoted cell starts on this line but its closing quote is missing"
    assert records == [(2, ("a@x.com", "Sales"))]
    assert table.row_count == 2


def test_text_after_a_closing_quote_is_an_error_and_reading_goes_on() -> None:
    data = b'email,team\na@x.com,"Sales" EMEA\nb@x.com,"R\n&D"x\nc@x.com,IT\n'
    table, records, log = read(data)
    assert [(e.line, e.column) for e in log.errors] == [(2, None), (3, None)]
    assert log.errors[0].message.startswith("unexpected text after a closing quote")
    assert records == [(5, ("c@x.com", "IT"))]
    assert table.row_count == 3


def test_rows_with_too_many_or_too_few_cells_are_errors() -> None:
    data = b"email,team\na@x.com\nb@x.com,Sales,Extra\nc@x.com,Sales,,  ,\nd@x.com,IT\n"
    table, records, log = read(data)
    assert [(e.line, e.column, e.value) for e in log.errors] == [(2, None, None), (3, None, None)]
    assert log.errors[0].message.startswith("this row has 1 cell but the header has 2 columns")
    assert log.errors[1].message.startswith("this row has 3 cells but the header has 2 columns")
    # trailing empty cells (Excel) are harmless
    assert records == [(4, ("c@x.com", "Sales")), (5, ("d@x.com", "IT"))]
    assert table.row_count == 4


def test_error_log_keeps_the_first_errors_and_counts_all() -> None:
    data = b"email,team\n" + b"x\n" * 7
    _, _, log = read(data, max_errors=3)
    assert log.count == 7
    assert [e.line for e in log.errors] == [2, 3, 4]
    with pytest.raises(ValueError):
        ErrorLog(FILE, -1)


def test_records_are_streamed_not_materialised() -> None:
    data = b"email,team\r\n" + b"".join(
        b"person%d@example.com,Team %d\r\n" % (n, n % 40) for n in range(20_000)
    )
    log = ErrorLog(FILE)
    tracemalloc.start()
    try:
        table = read_table(data, log, columns=COLUMNS, required=REQUIRED)
        count = sum(1 for _ in table)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == table.row_count == 20_000
    assert peak < len(data) / 4  # a small buffer, no decoded copy of the file
