"""Bytes to CSV records, knowing nothing about the two files' schemas.

Forgiving where a person expects it (a UTF-8 or UTF-16 byte-order mark, ``;`` or tab delimiters
from European Excel, header spelling, blank lines, stray spaces) and strict where data is at stake
(any other encoding, NUL bytes, broken quotes, rows whose cells do not line up with the header).

Every problem is reported as a :class:`~flask_csvdirectory.rows.RowError` naming the file and the
physical line where the record starts (the header is line 1, as a spreadsheet shows it), even
when quoted cells span several lines. The file is streamed: records are decoded and parsed as they
are consumed, so a large file costs little more memory than its bytes.

Typical use::

    log = ErrorLog("Employees.csv", max_errors=1000)
    table = read_table(data, log, columns=("email", "team"), required=("email",))
    email_at = table.position("email")
    for line, cells in table:
        ...
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import re
from collections.abc import Collection, Iterator, Sequence
from typing import Protocol

from .rows import RowError

#: What to tell a person whose file is not in an encoding we read.
UTF8_HINT = 'Save it as "CSV UTF-8 (Comma delimited)" (Excel: File > Save As) and upload it again.'

_DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_HEADER_SEPARATORS = re.compile(r"[\s_-]+")
_QUOTED_TEXT = re.compile(r'"[^"]*"?')
_VALIDATION_CHUNK = 1 << 20
_GUESS_SAMPLE = 1 << 15
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_CSV_MESSAGES = {
    "unexpected end of data": (
        "a quoted cell starts on this line but its closing quote is missing"
    ),
    "expected after": (
        'unexpected text after a closing quote; a quote inside a quoted cell must be doubled ("")'
    ),
    "field larger than field limit": (
        "a cell is far too long; a quote opened on this line is probably never closed"
    ),
}


class _RecordReader(Protocol):
    """What :func:`csv.reader` returns: records, and how many lines were read so far."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


class ErrorLog:
    """Collects one file's errors: keeps the first ``max_errors``, counts every one."""

    __slots__ = ("file", "max_errors", "errors", "count")

    def __init__(self, file: str, max_errors: int = 1000) -> None:
        if max_errors < 0:
            raise ValueError("max_errors must be 0 or more")
        self.file = file
        self.max_errors = max_errors
        self.errors: list[RowError] = []
        self.count = 0

    def add(
        self, line: int, message: str, *, column: str | None = None, value: str | None = None
    ) -> None:
        """Record one error at ``line`` (and ``column``/``value`` when they apply)."""
        self.count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(RowError(self.file, line, column, value, message))


def normalize_header(name: str) -> str:
    """The form header names are matched in: ``" First-Name "`` -> ``"first_name"``.

    Trimmed, lower-cased, runs of inner spaces, hyphens and underscores folded to one ``_``.
    """
    return _HEADER_SEPARATORS.sub("_", name.strip().lstrip("\ufeff").strip().lower())


class CsvTable:
    """One opened CSV file: its normalised header and a single-pass stream of data records.

    Iterating yields ``(line, cells)``: the physical line where the record starts and a tuple of
    trimmed cells, exactly as long as the header. Blank records are skipped; records that cannot
    be used (broken quotes, wrong number of cells) are reported to the log and skipped. When the
    file cannot be read at all (``readable`` is false: encoding, NUL byte, no header), iterating
    yields nothing but still counts the records. ``row_count`` counts the data records read so far,
    usable or not.
    """

    def __init__(
        self,
        file: str,
        log: ErrorLog,
        reader: _RecordReader,
        *,
        delimiter: str,
        columns: tuple[str, ...] = (),
        header_line: int = 1,
        positions: dict[str, int] | None = None,
        readable: bool = True,
        header_pending: bool = False,
        ends_with_line_break: bool = True,
        codec: str = "utf-8-sig",
        header_end: int = 1,
    ) -> None:
        self.file = file
        #: the codec the file is read with, and the line where its header ends
        self.codec = codec
        self.header_end = header_end
        self.delimiter = delimiter
        self.columns = columns
        self.header_line = header_line
        self.readable = readable
        self.row_count = 0
        self._log = log
        self._reader = reader
        self._positions = positions or {}
        self._header_pending = header_pending  # an unreadable file's header is still unread
        #: False when the last record has no line ending: a cut in it means a truncated file
        self.ends_with_line_break = ends_with_line_break

    def position(self, name: str) -> int | None:
        """Index of column ``name`` in each record, or ``None`` when absent or duplicated."""
        return self._positions.get(name)

    def __iter__(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        if self.readable:
            return self._records()
        self._count_rest()
        return iter(())

    def _records(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        reader = self._reader
        log = self._log
        width = len(self.columns)
        strip = str.strip
        previous = reader.line_num
        # A short record is reported once the next one is read: if it was the last record of a
        # file without a final line ending, the file was cut inside it (truncated).
        short: tuple[int, int] | None = None  # (line, cell count)
        while True:
            try:
                for row in reader:
                    if short is not None:
                        self._report_cells(*short, width)
                        short = None
                    start = previous + 1
                    previous = reader.line_num
                    cells = tuple(map(strip, row))
                    if len(cells) != width:
                        if not any(cells):
                            continue
                        self.row_count += 1
                        if len(cells) > width and not any(cells[width:]):
                            yield start, cells[:width]  # trailing empty cells are harmless
                            continue
                        if len(cells) < width and not self.ends_with_line_break:
                            short = (start, len(cells))
                        else:
                            self._report_cells(start, len(cells), width)
                        continue
                    if not any(cells):
                        continue
                    self.row_count += 1
                    yield start, cells
                if short is not None:
                    line, count = short
                    log.add(
                        line,
                        f"the file looks truncated: it ends inside this record, without a line "
                        f"break, after {count} of its {width} cells. Export the whole file "
                        "again and upload it.",
                    )
                return
            except csv.Error as exc:
                if short is not None:
                    self._report_cells(*short, width)
                    short = None
                self.row_count += 1
                message = _describe_csv_error(exc)
                if "unexpected end of data" in str(exc) and not self.ends_with_line_break:
                    message = (
                        "the file looks truncated: it ends inside a quoted cell of this record, "
                        "without a closing quote or a line break. Export the whole file again "
                        "and upload it."
                    )
                log.add(previous + 1, message)
                previous = reader.line_num

    def _report_cells(self, line: int, count: int, width: int) -> None:
        self._log.add(
            line,
            f"this row has {count} cell{'s' if count != 1 else ''} but the header"
            f" has {width} columns"
            " (a missing or extra delimiter, or an unquoted"
            f" {_DELIMITER_NAMES[self.delimiter]} inside a cell?)",
        )

    def _count_rest(self) -> None:
        """Count the remaining non-blank records of a file that cannot be read (best effort)."""
        strip = str.strip
        while True:
            try:
                for row in self._reader:
                    if any(map(strip, row)):
                        if self._header_pending:
                            self._header_pending = False
                        else:
                            self.row_count += 1
                return
            except csv.Error:
                if self._header_pending:
                    self._header_pending = False
                else:
                    self.row_count += 1


def read_table(
    data: bytes,
    log: ErrorLog,
    *,
    columns: Sequence[str],
    required: Collection[str] = (),
) -> CsvTable:
    """Open ``data`` as a CSV table, reporting file and header problems to ``log``.

    ``columns`` are the known column names (normalised, in their canonical order); ``required``
    those the header must contain. Unknown, duplicated and missing columns are errors on the header
    line; absent and duplicated columns have no :meth:`CsvTable.position`.
    """
    file = log.file
    codec, problem, has_nul = _check_encoding(data)
    source = io.TextIOWrapper(
        io.BytesIO(data),
        encoding=codec,
        errors="replace" if problem else "strict",
        newline="",
    )
    delimiter = _detect_delimiter(source)
    source.seek(0)
    reader = csv.reader(source, delimiter=delimiter, skipinitialspace=True, strict=True)

    def unreadable(
        line: int, message: str, column: str | None = None, *, header_pending: bool = True
    ) -> CsvTable:
        log.add(line, message, column=column)
        return CsvTable(
            file, log, reader, delimiter=delimiter, readable=False, header_pending=header_pending
        )

    if problem is not None:
        line, message = problem
        return unreadable(line, message)
    if has_nul:
        return unreadable(*_describe_nul(data, codec, delimiter))

    previous = 0
    try:
        for row in reader:
            header_line = previous + 1
            previous = reader.line_num
            header = [cell.strip() for cell in row]
            if any(header):
                break
        else:
            expected = ",".join(columns)
            return unreadable(1, f"the file is empty: its first line must be the header {expected}")
    except csv.Error as exc:
        message = f"the header cannot be read: {_describe_csv_error(exc)}"
        return unreadable(previous + 1, message, header_pending=False)

    while header and not header[-1]:
        header.pop()
    names = tuple(normalize_header(cell) for cell in header)
    positions = _check_header(header, names, header_line, log, columns, required)
    return CsvTable(
        file,
        log,
        reader,
        delimiter=delimiter,
        columns=names,
        header_line=header_line,
        positions=positions,
        ends_with_line_break=_ends_with_line_break(data, codec),
        codec=codec,
        header_end=previous,
    )


def _ends_with_line_break(data: bytes, codec: str) -> bool:
    """Whether the file's last character is a line break (CR or LF)."""
    if codec == "utf-16":
        big_endian = data.startswith(codecs.BOM_UTF16_BE)
        tail = data[-2:]
        return tail in ((b"\x00\n", b"\x00\r") if big_endian else (b"\n\x00", b"\r\x00"))
    return data.endswith((b"\n", b"\r"))


def _check_header(
    header: list[str],
    names: tuple[str, ...],
    line: int,
    log: ErrorLog,
    columns: Sequence[str],
    required: Collection[str],
) -> dict[str, int]:
    """Report unnamed, unknown, duplicated and missing columns; return usable positions."""
    known = set(columns)
    seen: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        seen.setdefault(name, []).append(index)
    for index, (written, name) in enumerate(zip(header, names, strict=True)):
        if not name:
            log.add(line, f"column {index + 1} of the header has no name")
        elif name not in known:
            close = difflib.get_close_matches(name, columns, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            log.add(
                line,
                f"unknown column{hint}; the known columns are {', '.join(columns)}",
                column=written,
            )
    for name, indexes in seen.items():
        if name and len(indexes) > 1:
            where = ", ".join(f"{i + 1} ({header[i]!r})" for i in indexes)
            log.add(
                line,
                f"this column appears more than once in the header: columns {where}",
                column=name,
            )
    missing = [name for name in columns if name in required and name not in seen]
    if missing:
        hint = "; is the first line the header?" if not known.intersection(names) else ""
        for name in missing:
            log.add(
                line,
                f"required column is missing; the header must include "
                f"{', '.join(n for n in columns if n in required)}{hint}",
                column=name,
            )
    return {
        name: indexes[0] for name, indexes in seen.items() if name in known and len(indexes) == 1
    }


def _detect_delimiter(source: io.TextIOWrapper) -> str:
    """Comma, or ``;`` / tab when the header line (first non-blank line) uses those more."""
    for line in source:
        if line.strip(" \t\r\n,;"):
            unquoted = _QUOTED_TEXT.sub("", line)
            counts = [(unquoted.count(d), -rank) for rank, d in enumerate(_DELIMITERS)]
            best = max(counts)
            return _DELIMITERS[-best[1]] if best[0] else ","
    return ","


def _describe_csv_error(exc: csv.Error) -> str:
    text = str(exc)
    for key, message in _CSV_MESSAGES.items():
        if key in text:
            return message
    return f"this record cannot be read as CSV ({text})"


# -- encodings -----------------------------------------------------------------------------


def _check_encoding(data: bytes) -> tuple[str, tuple[int, str] | None, bool]:
    """Pick the codec from the byte-order mark and check the whole file decodes with it.

    Returns ``(codec, problem, has_nul)``: ``problem`` is ``(line, message)`` when the file is not
    in an encoding we accept; ``has_nul`` tells whether the text holds a NUL character.
    """
    if data.startswith(_UTF32_BOMS):
        return "utf-32", (1, f"the file is UTF-32 text, which is not supported. {UTF8_HINT}"), False
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec, label = "utf-16", "UTF-16"
    else:
        codec, label = "utf-8-sig", "UTF-8"
    if codec == "utf-8-sig" and data.isascii():
        return codec, None, b"\x00" in data
    has_nul = False
    decoder = codecs.getincrementaldecoder(codec)()
    offset = 0
    chunk = b""
    try:
        for offset in range(0, len(data), _VALIDATION_CHUNK):
            chunk = data[offset : offset + _VALIDATION_CHUNK]
            has_nul = "\x00" in decoder.decode(chunk) or has_nul
        offset, chunk = len(data), b""
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        bad = offset - (len(exc.object) - len(chunk)) + exc.start
        return codec, (_line_of_byte(data, bad, codec), _encoding_message(data, bad, label)), False
    return codec, None, has_nul


def _line_of_byte(data: bytes, offset: int, codec: str) -> int:
    prefix = data[:offset].decode(codec, errors="replace")
    return _line_breaks(prefix) + 1


def _line_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _encoding_message(data: bytes, offset: int, label: str) -> str:
    byte = data[offset]
    guess = _guess_encoding(data, offset)
    looks = f" This looks like {guess}." if guess else ""
    return (
        f"the file is not valid {label} text: the byte 0x{byte:02X} at byte offset {offset} cannot"
        f" be read.{looks} {UTF8_HINT}"
    )


def _guess_encoding(data: bytes, offset: int) -> str | None:
    """A friendly name for what the bytes around ``offset`` look like (by charset-normalizer)."""
    from charset_normalizer import from_bytes

    start = data.rfind(b"\n", 0, max(0, offset - _GUESS_SAMPLE // 2)) + 1
    matches = from_bytes(data[start : start + _GUESS_SAMPLE])
    best = matches.best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    # Small samples often tie; Excel's Western "ANSI" code page is the likeliest of a tie.
    if any("cp1252" in m.could_be_from_charset for m in matches if m.chaos <= best.chaos):
        return "windows-1252"
    name = best.encoding
    if name.startswith("cp125"):
        return "windows-" + name[2:]
    if name.startswith("utf_16") or name.startswith("utf_32"):
        return name.replace("_", "-").upper() + " without a byte-order mark"
    return name.replace("_", "-")


def _describe_nul(data: bytes, codec: str, delimiter: str) -> tuple[int, str, str | None]:
    """Where the first NUL character is: ``(line, message, column name or None)``."""
    text = data.decode(codec)
    position = text.index("\x00")
    line = _line_breaks(text[:position]) + 1
    line_start = max(text.rfind("\n", 0, position), text.rfind("\r", 0, position)) + 1
    column = _column_holding_nul(text, delimiter)
    guess = _guess_encoding(data, min(position, len(data) - 1))
    looks = f" This looks like {guess}." if guess else ""
    message = (
        f"the file contains a NUL character (character {position - line_start + 1} of the line):"
        f" it is probably not a CSV text file.{looks} {UTF8_HINT}"
    )
    return line, message, column


def _column_holding_nul(text: str, delimiter: str) -> str | None:
    """The normalised header name of the first cell holding a NUL (None if in the header)."""
    header: list[str] | None = None
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if header is None:
                if not any(cell.strip() for cell in row):
                    continue
                if any("\x00" in cell for cell in row):
                    return None
                header = [normalize_header(cell) for cell in row]
                continue
            for index, cell in enumerate(row):
                if "\x00" in cell:
                    return header[index] if index < len(header) else None
    except csv.Error:
        return None
    return None
