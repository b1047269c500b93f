"""The encrypted file store: uploaded files and planned change sets, Fernet-encrypted at rest.

Bytes are encrypted in memory before they reach the database and decrypted in memory when a job
reads them; plaintext never touches the disk. :class:`~cryptography.fernet.MultiFernet` lets keys
rotate: the first key encrypts, every key decrypts, and :meth:`FileStore.rotate` re-encrypts old
rows with the newest key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.attributes import flag_modified

from .errors import ConfigurationError, CSVDirectoryError
from .models import StoredFile, SyncRun, utcnow


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

    def __init__(self, keys: Sequence[str | bytes]) -> None:
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
        """Decrypt with whichever configured key made ``token``."""
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise CSVDirectoryError(
                "A stored file cannot be decrypted: its key is no longer in "
                "CSVDIRECTORY_ENCRYPTION_KEYS"
            ) from exc

    def put(self, session: Session, run: SyncRun, role: str, filename: str, data: bytes) -> None:
        """Store ``data`` encrypted as the ``role`` file of ``run`` (replacing an older one)."""
        existing = run.file(role)
        if existing is not None:
            run.files.remove(existing)
            session.flush()
        run.files.append(
            StoredFile(
                org=run.org,
                role=role,
                filename=filename,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                ciphertext=self.encrypt(data),
            )
        )

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
        else:
            token = session.scalar(
                select(StoredFile.ciphertext).where(
                    StoredFile.run_id == run.id, StoredFile.role == role
                )
            )
        if token is None:
            raise CSVDirectoryError(f"The {role} file of this run is no longer stored")
        return self.decrypt(token)

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
                    "ciphertext": self.encrypt(data),
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
                .values(ciphertext=self._fernet.rotate(token))
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
