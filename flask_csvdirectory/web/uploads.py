"""Request bodies: checked for size while they stream in, and uploads kept in memory.

Werkzeug spools a multipart file larger than 500 KB to a temporary file on disk; for an upload
that would be the plaintext of Users.csv or Employees.csv. Every view that receives uploads calls
:func:`keep_uploads_in_memory` before the request body is parsed, so the bytes go from the socket
to memory to the encrypted store.

Memory is bounded while the body streams in, not after: :func:`limit_body` sets the request's
``max_content_length`` (a declared ``Content-Length`` over it is refused before a byte is read; a
chunked body is cut off by Werkzeug the moment it crosses it), and each uploaded file is written
into a buffer that refuses (:class:`~..errors.FileTooLarge`, 413) the byte after
``CSVDIRECTORY_MAX_UPLOAD_BYTES``, so a single oversized file in a chunked body is refused as
soon as it crosses the per-file limit.
"""

from __future__ import annotations

import io
from typing import IO

from flask import request

from ..errors import FileTooLarge

#: Bytes a multipart body may carry beyond its files (boundaries, part headers, small fields).
FORM_OVERHEAD = 64 * 1024


class CappedBuffer(io.BytesIO):
    """An in-memory file that refuses to grow past ``limit`` bytes (:class:`FileTooLarge`, a
    413)."""

    def __init__(self, limit: int, filename: str | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.filename = filename

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.limit:
            name = self.filename or "An uploaded file"
            raise FileTooLarge(
                f"{name} is larger than the limit of {self.limit:,} bytes. Nothing was started."
            )
        return super().write(data)

    def read(self, size: int | None = -1) -> bytes:
        """As :meth:`io.BytesIO.read`; reading the whole file from its start gives the buffer's
        own bytes (:meth:`getvalue`, no copy), so an upload is held once in memory."""
        start = self.tell()
        end = self.seek(0, io.SEEK_END)
        if start == 0 and (size is None or size < 0 or size >= end):
            return self.getvalue()
        self.seek(start)
        return super().read(size)


def limit_body(max_bytes: int, *, form_bytes: int | None = None) -> None:
    """Refuse this request's body past ``max_bytes`` (and its non-file fields past
    ``form_bytes``), while it is read. Must run before anything reads the body."""
    request.max_content_length = max_bytes
    request.max_form_memory_size = form_bytes if form_bytes is not None else max_bytes


def keep_uploads_in_memory(file_limit: int) -> None:
    """Make this request parse each uploaded file into a :class:`CappedBuffer` of
    ``file_limit`` bytes instead of a temporary file.

    Uses the stream factory hook Werkzeug documents for ``Request._get_file_stream``, set on this
    request only. Must run before anything reads ``request.form`` or ``request.files``.
    """

    def in_memory(
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return CappedBuffer(file_limit, filename)

    request._get_file_stream = in_memory  # type: ignore[method-assign]
