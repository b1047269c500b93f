"""Uploaded files stay in memory until they are encrypted.

Werkzeug spools a multipart file larger than 500 KB to a temporary file on disk; for an upload
that would be the plaintext of Users.csv or Employees.csv. Every view that receives uploads calls
:func:`keep_uploads_in_memory` before the request body is parsed, so the bytes go from the socket
to memory to the encrypted store (``CSVDIRECTORY_MAX_UPLOAD_BYTES`` bounds the memory).
"""

from __future__ import annotations

import io
from typing import IO

from flask import request


def _in_memory(
    total_content_length: int | None,
    content_type: str | None,
    filename: str | None = None,
    content_length: int | None = None,
) -> IO[bytes]:
    return io.BytesIO()


def keep_uploads_in_memory() -> None:
    """Make this request parse uploaded files into memory instead of temporary files.

    Uses the stream factory hook Werkzeug documents for ``Request._get_file_stream``, set on this
    request only. Must run before anything reads ``request.form`` or ``request.files``.
    """
    request._get_file_stream = _in_memory  # type: ignore[method-assign]
