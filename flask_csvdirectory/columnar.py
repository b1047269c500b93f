"""The columnar fast path of the reader: a large, well-formed CSV parsed by Arrow's C reader.

:func:`read_cells` parses a file that :func:`~flask_csvdirectory.reader.read_table` already
opened (header read, encoding checked) with ``pyarrow.csv``, every column as text, and hands it
out in slices of trimmed cells, each cell exactly what the Python reader would give. It only
takes files on which both readers provably agree, line numbers included, and returns ``None``
for anything else, so the caller reads those with the Python reader (which reports every
problem with its place):

- UTF-8 (or ASCII) text, no NUL, line breaks ``\\n`` or ``\\r\\n`` only, no empty line and a
  header on line 1: every data line is then one record, so record ``i`` is on line ``i + 2``;
- a line holding a quote is read again with the Python reader, on its own: it must be one
  complete record (no quoted cell running over a line break, no text after a closing quote)
  without spaces before an opening quote;
- every record has as many cells as the header.

A cell made of printable ASCII is trimmed by Arrow (its only whitespace is the space); any
other cell is trimmed by :meth:`str.strip`, as the Python reader does.

:func:`fast_verdicts` checks a column of trimmed cells the way the formats' text, identifier
and email fields would, vectorised: it answers "certainly valid, and this is the value" for
the common case (printable ASCII within the length limit; emails of a strict ASCII form at a
domain email-validator accepts) and "ask the field" for everything else.
"""

from __future__ import annotations

import codecs
import csv
import ctypes
import functools
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - imported lazily: pyarrow costs 0.1 s to import
    import pyarrow as pa

#: Files smaller than this are read by the Python reader: Arrow's import would cost more than
#: it saves. Tests set it to 0 to run the columnar path on small files.
MIN_BYTES = 256 * 1024
#: Bytes of the file parsed at a time (bounds the transient memory of a large file).
BLOCK_BYTES = 2 << 20

_PRINTABLE_ASCII = r"^[ -~]*$"
#: check_email's ASCII fast path: a dot-atom mailbox, one ``@``, a domain without ``@`` or space
#: (the domain itself is checked by email-validator, once per distinct domain).
_PLAIN_EMAIL = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[!-?A-~]*$"
)
_SPACE_BEFORE_QUOTE = re.compile(r'(?:^|[,;\t]) +"')


class _Kernels:
    """``pyarrow.compute``, every kernel allocating from Arrow's jemalloc pool set to give freed
    memory back at once (else the system allocator): a read leaves neither retained pages
    (mimalloc, Arrow's default, keeps them) nor holes in the C heap the rows live in."""

    def __init__(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self._compute = pc
        try:  # jemalloc, giving freed pages back at once: it leaves the C heap unfragmented
            self.pool = pa.jemalloc_memory_pool()
            pa.jemalloc_set_decay_ms(0)
        except (NotImplementedError, pa.ArrowNotImplementedError):  # a build without it
            self.pool = pa.system_memory_pool()

    def __getattr__(self, name: str) -> Any:
        kernel = getattr(self._compute, name)
        if name in _NO_POOL:
            return kernel
        return functools.partial(kernel, memory_pool=self.pool)


#: Helpers of pyarrow.compute that take no memory pool.
_NO_POOL = frozenset({"fill_null"})


@functools.cache
def _kernels() -> _Kernels:
    return _Kernels()


class NotColumnar(Exception):
    """The file is not one the columnar path reads exactly like the Python reader."""


@dataclass(slots=True)
class CellSlice:
    """Consecutive records of a file: ``first_line`` is the line of the first; ``raw[i]`` is
    the Arrow array of column ``i`` (untrimmed), ``trimmed[i]`` the same with its spaces
    trimmed, ``plain[i]`` the mask of its cells made of printable ASCII. Python strings are
    made only when asked for (:meth:`column_cells`, :attr:`cells`)."""

    first_line: int
    size: int
    raw: list[pa.Array]
    trimmed: list[pa.Array]
    plain: list[pa.Array]
    _cells: list[list[str]] | None = None

    @property
    def cells(self) -> list[list[str]]:
        """Every column's cells, trimmed as the Python reader trims them."""
        if self._cells is None:
            self._cells = [self.column_cells(index) for index in range(len(self.raw))]
        return self._cells

    def column_cells(self, index: int) -> list[str]:
        """Column ``index``'s cells, trimmed as the Python reader trims them."""
        pc = _kernels()

        values: list[str] = self.trimmed[index].to_pylist()
        plain = self.plain[index]
        if not pc.all(plain).as_py():
            self.strip_at(index, values, pc.indices_nonzero(pc.invert(plain)).to_pylist())
        return values

    def strip_at(self, index: int, values: list[Any], positions: list[int]) -> None:
        """Set ``values[i]`` to cell ``i`` of column ``index`` trimmed by :meth:`str.strip`,
        for each ``i`` in ``positions``."""
        if positions:
            cells = _kernels().take(self.raw[index], positions).to_pylist()
            for at, cell in zip(positions, cells, strict=True):
                values[at] = cell.strip()

    def blank_rows(self) -> bool:
        """Whether a record's cells may all be blank (the Python reader skips such a record)."""
        pc = _kernels()

        if not self.raw:
            return False
        filled = None
        for trimmed, plain in zip(self.trimmed, self.plain, strict=True):
            # a cell that is not printable ASCII may still strip to nothing: count it as blank
            cell = pc.and_(pc.not_equal(pc.utf8_length(trimmed), 0), plain)
            filled = cell if filled is None else pc.or_(filled, cell)
        return not pc.all(filled).as_py()


def eligible(data: bytes, *, delimiter: str, codec: str, header_lines: int) -> bool:
    """Whether the bytes-level conditions hold (cheap scans in C; see the module doc)."""
    if codec != "utf-8-sig" or header_lines != 1 or len(data) < MIN_BYTES:
        return False
    if data.count(b"\r") != data.count(b"\r\n"):
        return False  # a lone CR ends a line for the Python reader
    body = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    if body.startswith((b"\n", b"\r\n")) or b"\n\n" in body or b"\n\r\n" in body:
        return False
    return delimiter in (",", ";", "\t")


def read_cells(data: bytes, *, delimiter: str, width: int) -> Iterator[CellSlice]:
    """Slices of trimmed cells of ``data``'s records (the header excluded), streamed: one block
    of the file is parsed at a time, so memory stays bounded whatever the file's size.

    Raises :class:`NotColumnar` when the file is not one this path reads exactly like the
    Python reader: at once for what the bytes and the first block show, or while iterating
    (a record with another number of cells further down, say); the caller then reads the
    file again with the Python reader.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    pc = _kernels()
    offset = 3 if data.startswith(codecs.BOM_UTF8) else 0
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    quoted = _quoted_lines(data, offset, delimiter) if b'"' in data else {}
    try:
        reader = pa_csv.open_csv(
            pa.BufferReader(pa.py_buffer(data)[offset:]),
            read_options=pa_csv.ReadOptions(
                skip_rows=1, autogenerate_column_names=True, use_threads=False,
                block_size=BLOCK_BYTES,
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, quote_char='"', double_quote=True, escape_char=False,
                newlines_in_values=False, ignore_empty_lines=False,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(width)},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
            memory_pool=pc.pool,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise NotColumnar(str(exc)) from None
    if len(reader.schema) != width:
        raise NotColumnar("the first record's cells do not match the header")
    return _slices(reader, width, lines - 1, quoted, pa, pc)


def _slices(
    reader: Any, width: int, records: int, quoted: dict[int, list[str]], pa: Any, pc: Any
) -> Iterator[CellSlice]:
    start = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise NotColumnar(str(exc)) from None
        size = batch.num_rows
        if not size:
            continue
        for line in [line for line in quoted if start + 2 <= line < start + 2 + size]:
            row = [batch.column(i)[line - 2 - start].as_py() for i in range(width)]
            if [cell.strip() for cell in row] != quoted.pop(line):
                raise NotColumnar(f"line {line} reads differently")
        raw, trimmed, plain = [], [], []
        for i in range(width):
            column = batch.column(i)
            raw.append(column)
            trimmed.append(pc.ascii_trim(column, " "))
            plain.append(pc.match_substring_regex(column, _PRINTABLE_ASCII))
        yield CellSlice(start + 2, size, raw, trimmed, plain)
        start += size
    if start != records or quoted:
        raise NotColumnar("records and lines do not line up")


def give_back_memory() -> None:
    """Return the C heap's free memory to the system (glibc's ``malloc_trim``), after the
    many large short-lived buffers of a columnar read; nothing elsewhere."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _quoted_lines(data: bytes, offset: int, delimiter: str) -> dict[int, list[str]]:
    """Each line holding a quote (line number -> its cells by the Python reader, trimmed);
    :class:`NotColumnar` when one is not a complete record on its own."""
    found: dict[int, list[str]] = {}
    position = data.find(b'"', offset)
    line, counted_to = 1, offset
    while position != -1:
        start = data.rfind(b"\n", 0, position) + 1
        end = data.find(b"\n", position)
        end = len(data) if end == -1 else end + 1
        line += data.count(b"\n", counted_to, start)
        counted_to = start
        text = data[max(start, offset) : end].decode("utf-8")
        if _SPACE_BEFORE_QUOTE.search(text):
            raise NotColumnar(f"line {line}: a space before an opening quote")
        try:
            records = list(
                csv.reader(
                    io.StringIO(text, newline=""),
                    delimiter=delimiter,
                    skipinitialspace=True,
                    strict=True,
                )
            )
        except csv.Error as exc:
            raise NotColumnar(f"line {line}: {exc}") from None
        if len(records) != 1:
            raise NotColumnar(f"line {line} is not one record")
        found[line] = [cell.strip() for cell in records[0]]
        position = data.find(b'"', end)
    found.pop(1, None)  # the header: read by the Python reader
    return found


# -- vectorised verdicts --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FastCheck:
    """What a field checks that the columnar path can vouch for: ``kind`` is ``"text"`` (a
    name, title or identifier: printable ASCII within ``max_length`` is its own value) or
    ``"email"`` (see :func:`fast_verdicts`)."""

    kind: str
    max_length: int | None = None
    domain_problem: Callable[[str], object] | None = None


def fast_verdicts(
    check: FastCheck | None, cells: CellSlice, index: int
) -> tuple[list[Any], list[int]]:
    """``(values, todo)`` for column ``index`` of ``cells``: ``values[i]`` is the field's value
    of cell ``i`` wherever ``i`` is not in ``todo``; in ``todo`` (blank cells, and those the
    vectorised check cannot vouch for) ``values[i]`` is the cell, trimmed, left to the caller
    and the field. ``check`` ``None``: every cell is in ``todo``.

    A column of repeated values (teams, titles) gives one string object per distinct value.
    """
    import pyarrow as pa
    pc = _kernels()

    if check is None:
        return cells.column_cells(index), list(range(cells.size))
    trimmed = cells.trimmed[index]
    length = pc.utf8_length(trimmed)
    ok = pc.and_(cells.plain[index], pc.not_equal(length, 0))
    if check.max_length is not None and check.kind != "plain":
        ok = pc.and_(ok, pc.less_equal(length, check.max_length))
    if check.kind != "email":
        values = _python_strings(trimmed, pc)
    else:
        ok = pc.and_(ok, pc.match_substring_regex(trimmed, _PLAIN_EMAIL))
        ok = pc.and_(ok, pc.less_equal(length, 254))
        at = pc.find_substring(trimmed, "@")
        ok = pc.and_(ok, pc.and_(pc.greater(at, 0), pc.less_equal(at, 64)))
        lowered = pc.utf8_lower(trimmed)
        domains = pc.replace_substring_regex(lowered, r"^[^@]*@", "")
        assert check.domain_problem is not None
        candidates = pc.unique(pc.filter(domains, ok)).to_pylist()
        good = [domain for domain in candidates if check.domain_problem(domain) is None]
        good_domains = pa.array(good, pa.string(), memory_pool=pc.pool)
        ok = pc.and_(ok, pc.is_in(domains, value_set=good_domains))
        values = lowered.to_pylist()
    todo = list(pc.indices_nonzero(pc.invert(pc.fill_null(ok, False))).to_pylist())
    cells.strip_at(index, values, todo)
    return values, todo


def _python_strings(column: Any, pc: Any) -> list[Any]:
    """``column.to_pylist()``, with one string object per distinct value when values repeat."""
    if pc.count_distinct(column).as_py() * 2 > len(column):
        return column.to_pylist()  # type: ignore[no-any-return]
    encoded = pc.dictionary_encode(column)
    distinct = encoded.dictionary.to_pylist()
    return list(map(distinct.__getitem__, encoded.indices.to_pylist()))
