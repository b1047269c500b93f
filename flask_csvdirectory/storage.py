"""The encrypted file store: uploaded files and planned change sets, Fernet-encrypted at rest.

Bytes are encrypted in memory before they reach the database and decrypted in memory when a job
reads them; plaintext never touches the disk. :class:`~cryptography.fernet.MultiFernet` lets keys
rotate: the first key encrypts, every key decrypts, and :meth:`FileStore.rotate` re-encrypts old
rows with the newest key.

A file larger than one segment (1 MiB) is stored as a sequence of Fernet tokens, one per
segment, authenticated as a whole (see :data:`MAGIC`): storing or reading it costs about one
copy of the file, not the several that one token of the whole file makes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sqlite3
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import LargeBinary, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.attributes import flag_modified

from .errors import ConfigurationError, CSVDirectoryError
from .models import StoredFile, SyncRun, utcnow

# -- the segmented format of large files ----------------------------------------------------
#
# A file larger than one segment is stored as many Fernet tokens, one per segment, so that
# encrypting or decrypting it holds one segment's temporaries instead of several whole copies
# of the file (one Fernet token of an 80 MB file made about five). The stored bytes are:
#
#     MAGIC | count (u32) | size (u64) | count x ( token length (u32) | Fernet token )
#
# and each token's plaintext is ``file id (16 random bytes) | index (u32) | count (u32) |
# size (u64) | the segment's bytes``. Fernet authenticates each segment with its header, so a
# segment dropped, repeated, swapped, truncated or taken from another file (another file id) is
# refused, and so is any disagreement with the unauthenticated outer framing. A single Fernet
# token (the older format, and every file up to one segment) starts with ``gAAAAA`` (version
# byte 0x80), never with MAGIC, so both formats read side by side.

MAGIC = b"CSVDSEG1"
SEGMENT_SIZE = 1 << 20
_FRAME = struct.Struct(">IQ")  # count, size
_LENGTH = struct.Struct(">I")
_HEADER = struct.Struct(">16sIIQ")  # file id, index, count, size
_READ_CHUNK = 8 << 20  # bytes of ciphertext fetched per query when a file is read in pieces


def _token_length(plaintext_length: int) -> int:
    """The exact length of the Fernet token of ``plaintext_length`` bytes: version, timestamp,
    IV, the AES-CBC ciphertext (PKCS7 padding adds 1-16 bytes), HMAC; base64 with padding."""
    raw = 1 + 8 + 16 + (plaintext_length // 16 + 1) * 16 + 32
    return 4 * ((raw + 2) // 3)


def _tampered() -> CSVDirectoryError:
    return CSVDirectoryError("A stored file is damaged: its encrypted segments do not fit together")


def derive_key(secret: str | bytes) -> bytes:
    """A Fernet key derived from the app's ``SECRET_KEY`` (HKDF-SHA256), for hosts that set no
    ``CSVDIRECTORY_ENCRYPTION_KEYS``."""
    if isinstance(secret, str):
        secret = secret.encode()
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"flask-csvdirectory", info=b"file-store"
    ).derive(secret)
    return base64.urlsafe_b64encode(raw)


class FileStore:
    """Encrypts, stores and reads back the files of sync runs."""

    def __init__(self, keys: Sequence[str | bytes], *, segment_size: int = SEGMENT_SIZE) -> None:
        if segment_size < 1:
            raise ValueError("segment_size must be positive")
        self._segment_size = segment_size
        if not keys:
            raise ConfigurationError(
                "No encryption key: set CSVDIRECTORY_ENCRYPTION_KEYS or the app's SECRET_KEY"
            )
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "CSVDIRECTORY_ENCRYPTION_KEYS must be Fernet keys "
                "(make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from exc

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt with the newest key."""
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """Decrypt with whichever configured key made ``token`` (one Fernet token, or the
        segmented form of a large file that :meth:`encrypt_file` makes)."""
        if token[: len(MAGIC)] == MAGIC:
            return self._unseal(lambda offset, length: token[offset : offset + length])
        return self._decrypt_token(token)

    def _decrypt_token(self, token: bytes) -> bytes:
        if not isinstance(token, bytes):  # a bytearray or memoryview from a driver
            token = bytes(token)
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise CSVDirectoryError(
                "A stored file cannot be decrypted: its key is no longer in "
                "CSVDIRECTORY_ENCRYPTION_KEYS"
            ) from exc

    def encrypt_file(self, data: bytes) -> bytes:
        """Encrypt a file for storage: one Fernet token up to one segment, the segmented form
        beyond (a ``bytearray``, written in place: no other copy of the file is made)."""
        if len(data) <= self._segment_size:
            return self.encrypt(bytes(data))
        return self._seal(data)

    def _seal(self, data: bytes) -> bytes:
        """The segmented form of ``data`` (whatever its size), built in one preallocated
        buffer."""
        total, pieces = self._sealed(data)
        out = bytearray(total)
        for offset, piece in pieces:
            out[offset : offset + len(piece)] = piece
        return out  # type: ignore[return-value]  # a bytearray: stored as it is

    def _sealed(self, data: bytes) -> tuple[int, Iterator[tuple[int, bytes]]]:
        """The length of the segmented form of ``data`` and its pieces ``(offset, bytes)``,
        encrypted one segment at a time as they are consumed."""
        size, step = len(data), self._segment_size
        count = max(1, -(-size // step))
        last = size - (count - 1) * step
        lengths = [_token_length(_HEADER.size + step)] * (count - 1)
        lengths.append(_token_length(_HEADER.size + last))
        start = len(MAGIC) + _FRAME.size
        total = start + sum(lengths) + _LENGTH.size * count

        def pieces() -> Iterator[tuple[int, bytes]]:
            yield 0, MAGIC + _FRAME.pack(count, size)
            file_id = os.urandom(16)
            view = memoryview(data)
            position = start
            for index, length in enumerate(lengths):
                header = _HEADER.pack(file_id, index, count, size)
                token = self._fernet.encrypt(header + view[index * step : (index + 1) * step])
                if len(token) != length:  # pragma: no cover - Fernet's format is fixed
                    raise RuntimeError("Unexpected Fernet token length")
                yield position, _LENGTH.pack(length) + token
                position += _LENGTH.size + length

        return total, pieces()

    def _tokens(self, read: Callable[[int, int], bytes]) -> Iterable[tuple[int, int, bytes]]:
        """``(offset, count, token)`` of each segment of a segmented file, ``read(offset,
        length)`` giving its stored bytes; checks the framing only."""
        head = read(0, len(MAGIC) + _FRAME.size)
        if len(head) != len(MAGIC) + _FRAME.size or head[: len(MAGIC)] != MAGIC:
            raise _tampered()
        count, _ = _FRAME.unpack_from(head, len(MAGIC))
        position = len(head)
        for _ in range(count):
            prefix = read(position, _LENGTH.size)
            if len(prefix) != _LENGTH.size:
                raise _tampered()
            (length,) = _LENGTH.unpack(prefix)
            token = read(position + _LENGTH.size, length)
            if len(token) != length:
                raise _tampered()
            yield position, count, bytes(token)  # Fernet takes bytes: one segment's copy
            position += _LENGTH.size + length
        if read(position, 1):
            raise _tampered()  # bytes after the last segment

    def _unseal(self, read: Callable[[int, int], bytes]) -> bytes:
        """The plaintext of a segmented file: every segment must carry the same file id, its
        own index, the count and the size; the result is built in one buffer."""
        head = read(0, len(MAGIC) + _FRAME.size)
        if len(head) != len(MAGIC) + _FRAME.size:
            raise _tampered()
        count, size = _FRAME.unpack_from(head, len(MAGIC))
        out: io.BytesIO | None = None
        file_id = b""
        written = 0
        for index, (_, _, token) in enumerate(self._tokens(read)):
            plain = self._decrypt_token(token)
            if len(plain) < _HEADER.size:
                raise _tampered()
            their_id, their_index, their_count, their_size = _HEADER.unpack_from(plain)
            if index == 0:
                file_id = their_id
                if their_size != size:
                    raise _tampered()
                # allocated only once the first segment vouches for the size
                out = io.BytesIO()
                if size:
                    out.seek(size - 1)
                    out.write(b"\0")
                    out.seek(0)
            body = memoryview(plain)[_HEADER.size :]
            if (
                out is None
                or their_id != file_id
                or their_index != index
                or their_count != count
                or their_size != size
                or written + len(body) > size
            ):
                raise _tampered()
            out.write(body)
            written += len(body)
            del body, plain
        if out is None or written != size:
            raise _tampered()
        # BytesIO hands over its buffer without copying when it is exactly full
        return out.getvalue()

    def _rotate_token(self, token: bytes) -> bytes:
        """``token`` (either form) encrypted with the newest key; a large single token is
        stored segmented from then on."""
        if token[: len(MAGIC)] != MAGIC:
            if len(token) <= _token_length(self._segment_size):
                return self._fernet.rotate(token)
            return self.encrypt_file(self._decrypt_token(token))
        rotated = bytearray(token)
        for position, _, segment in self._tokens(
            lambda offset, length: token[offset : offset + length]
        ):
            fresh = self._fernet.rotate(segment)
            if len(fresh) != len(segment):  # pragma: no cover - same plaintext, same length
                raise RuntimeError("Unexpected Fernet token length")
            start = position + _LENGTH.size
            rotated[start : start + len(fresh)] = fresh
        return rotated  # type: ignore[return-value]

    def put(self, session: Session, run: SyncRun, role: str, filename: str, data: bytes) -> None:
        """Store ``data`` encrypted as the ``role`` file of ``run`` (replacing an older one)."""
        existing = run.file(role)
        if existing is not None:
            run.files.remove(existing)
            session.flush()
        stored = StoredFile(
            org=run.org,
            role=role,
            filename=filename,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        raw = session.connection().connection.driver_connection
        if len(data) <= self._segment_size or not isinstance(raw, sqlite3.Connection):
            stored.ciphertext = self.encrypt_file(data)
            run.files.append(stored)
            return
        # SQLite: the row is written with room for the ciphertext, which is then encrypted
        # straight into it segment by segment (incremental blob I/O): no copy of the file
        total, pieces = self._sealed(data)
        stored.ciphertext = func.zeroblob(total)
        run.files.append(stored)
        session.flush()
        with raw.blobopen(StoredFile.__tablename__, "ciphertext", stored.id) as blob:
            for offset, piece in pieces:
                blob.seek(offset)
                blob.write(piece)

    def copy(
        self, session: Session, run: SyncRun, role: str, new_role: str, filename: str
    ) -> bool:
        """Store the ``role`` file of ``run`` again as ``new_role`` (same ciphertext, nothing
        decrypted); ``False`` when there is no such file to copy. Only that file's row is
        read (not every file of the run)."""
        source = session.execute(
            select(StoredFile.size, StoredFile.sha256, StoredFile.ciphertext).where(
                StoredFile.run_id == run.id, StoredFile.role == role
            )
        ).first()
        if source is None or source.ciphertext is None:
            return False
        session.execute(
            delete(StoredFile).where(StoredFile.run_id == run.id, StoredFile.role == new_role)
        )
        session.execute(
            insert(StoredFile),
            [
                {
                    "org": run.org,
                    "run_id": run.id,
                    "role": new_role,
                    "filename": filename,
                    "size": source.size,
                    "sha256": source.sha256,
                    "created_at": utcnow(),
                    "ciphertext": source.ciphertext,
                }
            ],
        )
        if "files" in run.__dict__:
            session.expire(run, ["files"])
        return True

    def get(self, run: SyncRun, role: str) -> bytes:
        """The decrypted bytes of the ``role`` file of ``run``.

        When the run's files are not loaded yet, only this file's row is read (a run stores its
        change set in many pages: loading them all to read one would defeat paging)."""
        session = object_session(run)
        if "files" in run.__dict__ or session is None:
            stored = run.file(role)
            token = stored.ciphertext if stored is not None else None
            if token is None:
                raise CSVDirectoryError(f"The {role} file of this run is no longer stored")
            return self.decrypt(token)
        return self._read(session, run.id, role)

    def _read(self, session: Session, run_id: str, role: str) -> bytes:
        """The decrypted bytes of one file, its segmented form fetched a few MB at a time (the
        whole ciphertext is never held beside the plaintext)."""
        raw = session.connection().connection.driver_connection
        if isinstance(raw, sqlite3.Connection):
            return self._read_sqlite(session, raw, run_id, role)

        def fetch(offset: int, length: int) -> bytes | None:
            piece: bytes | None = session.scalar(
                select(
                    func.substr(StoredFile.ciphertext, offset + 1, length, type_=LargeBinary)
                ).where(StoredFile.run_id == run_id, StoredFile.role == role)
            )
            return piece

        first = fetch(0, _READ_CHUNK)
        if first is None:
            raise CSVDirectoryError(f"The {role} file of this run is no longer stored")
        if first[: len(MAGIC)] != MAGIC:
            if len(first) == _READ_CHUNK:  # a large file in the older single-token form
                token = session.scalar(
                    select(StoredFile.ciphertext).where(
                        StoredFile.run_id == run_id, StoredFile.role == role
                    )
                )
                first = token if token is not None else b""
            return self._decrypt_token(bytes(first))
        window = (0, bytes(first))
        del first

        def read(offset: int, length: int) -> bytes:
            nonlocal window
            start, held = window
            if not (start <= offset and offset + length <= start + len(held)):
                start, held = offset, bytes(fetch(offset, max(length, _READ_CHUNK)) or b"")
                window = (start, held)
            return held[offset - start : offset - start + length]

        return self._unseal(read)

    def _read_sqlite(
        self, session: Session, raw: sqlite3.Connection, run_id: str, role: str
    ) -> bytes:
        """:meth:`_read` on SQLite, whose ``substr`` of a blob loads all of it: the stored
        bytes are read through SQLite's incremental blob I/O instead."""
        row_id = session.scalar(
            select(StoredFile.id).where(
                StoredFile.run_id == run_id,
                StoredFile.role == role,
                StoredFile.ciphertext.is_not(None),
            )
        )
        if row_id is None:
            raise CSVDirectoryError(f"The {role} file of this run is no longer stored")
        with raw.blobopen(StoredFile.__tablename__, "ciphertext", row_id, readonly=True) as blob:
            end = len(blob)
            if blob.read(len(MAGIC)) != MAGIC:
                blob.seek(0)
                return self._decrypt_token(blob.read())

            def read(offset: int, length: int) -> bytes:
                if offset >= end:
                    return b""
                blob.seek(offset)
                return blob.read(length)

            return self._unseal(read)

    # -- many small files (the pages of a change set) ---------------------------------------
    #
    # Pages are written and read by role with direct statements, not through ``run.files``:
    # reading one page must not load every page's ciphertext.

    def put_many(
        self,
        session: Session,
        run: SyncRun,
        files: Iterable[tuple[str, str, bytes]],
        *,
        batch: int = 32,
    ) -> int:
        """Store each ``(role, filename, data)`` encrypted as a new file of ``run`` (the roles
        must be free: see :meth:`delete_prefixed`), ``batch`` rows per INSERT; returns how many
        were stored. ``files`` is consumed lazily, so a generator is never held whole."""
        rows: list[dict[str, object]] = []
        stored = 0
        for role, filename, data in files:
            rows.append(
                {
                    "org": run.org,
                    "run_id": run.id,
                    "role": role,
                    "filename": filename,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "created_at": utcnow(),
                    "ciphertext": self.encrypt_file(data),
                }
            )
            if len(rows) >= batch:
                session.execute(insert(StoredFile), rows)
                stored += len(rows)
                rows = []
        if rows:
            session.execute(insert(StoredFile), rows)
            stored += len(rows)
        return stored

    def get_many(self, session: Session, run_id: str, roles: Sequence[str]) -> dict[str, bytes]:
        """The decrypted bytes of the given files of run ``run_id``, by role, read in one
        query; :class:`CSVDirectoryError` when one is missing or purged."""
        found = {
            role: token
            for role, token in session.execute(
                select(StoredFile.role, StoredFile.ciphertext).where(
                    StoredFile.run_id == run_id, StoredFile.role.in_(list(roles))
                )
            )
        }
        result: dict[str, bytes] = {}
        for role in roles:
            token = found.get(role)
            if token is None:
                raise CSVDirectoryError(f"The {role} file of this run is no longer stored")
            result[role] = self.decrypt(token)
        return result

    @staticmethod
    def delete_prefixed(session: Session, run: SyncRun, prefix: str) -> int:
        """Delete every file of ``run`` whose role starts with ``prefix`` (no wildcard
        characters in it); returns how many."""
        result = session.execute(
            delete(StoredFile).where(
                StoredFile.run_id == run.id, StoredFile.role.like(f"{prefix}%")
            )
        )
        if "files" in run.__dict__:
            session.expire(run, ["files"])
        return result.rowcount or 0  # type: ignore[attr-defined]

    def rotate(self, session: Session) -> int:
        """Re-encrypt every stored file, and every run's failure reason and row errors, with the
        newest key; return how many files were rewritten."""
        failed = select(SyncRun).where(
            or_(SyncRun.error_reason.is_not(None), SyncRun.error_count > 0)
        )
        for run in session.scalars(failed):
            flag_modified(run, "error_reason")  # rewritten (encrypted anew) at the next flush
            flag_modified(run, "row_errors")
        session.flush()
        rewritten = 0
        ids = session.scalars(select(StoredFile.id).where(StoredFile.ciphertext.is_not(None)))
        for file_id in list(ids):
            token = session.scalar(select(StoredFile.ciphertext).where(StoredFile.id == file_id))
            if token is None:  # purged meanwhile
                continue
            session.execute(
                update(StoredFile)
                .where(StoredFile.id == file_id)
                .values(ciphertext=self._rotate_token(token))
            )
            rewritten += 1
        return rewritten

    @staticmethod
    def purge(session: Session, older_than: datetime, org: str | None = None) -> int:
        """Drop the contents of every stored file (uploads, change set, the applied record with
        its before-values, a revert's conflicts) of runs that finished before ``older_than``;
        their metadata stays, with ``purged_at``. Files of open runs are kept, and so is the
        record of a run whose revert is still open (the revert plans from it). A run whose
        applied record is purged can no longer be reverted. Returns how many files were
        purged."""
        finished = select(SyncRun.id).where(
            SyncRun.finished_at.is_not(None), SyncRun.finished_at < older_than
        )
        if org is not None:
            finished = finished.where(SyncRun.org == org)
        being_reverted = select(SyncRun.reverts_run_id).where(
            SyncRun.reverts_run_id.is_not(None), SyncRun.finished_at.is_(None)
        )
        result = session.execute(
            update(StoredFile)
            .where(
                StoredFile.ciphertext.is_not(None),
                StoredFile.run_id.in_(finished),
                StoredFile.run_id.not_in(being_reverted),
            )
            .values(ciphertext=None, purged_at=utcnow())
        )
        return result.rowcount or 0  # type: ignore[attr-defined]
