"""The file store's segmented format: a large file is stored as one Fernet token per segment,
authenticated as a whole, and read back a few MB at a time (issue 14, bounded memory)."""

from __future__ import annotations

import struct

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select, update

from example_app.models import db
from flask_csvdirectory import CSVDirectoryError, runs, storage
from flask_csvdirectory.models import StoredFile, SyncRun
from flask_csvdirectory.storage import MAGIC, SEGMENT_SIZE, FileStore, derive_key

from .conftest import ADMIN
from .factories import employee, employees_csv, users_csv

STEP = 64
KEY = Fernet.generate_key()


def sample(size: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


def segments(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The frame (magic, count, size) and the length-prefixed segments of a segmented blob."""
    head = len(MAGIC) + 12
    frame, rest, parts = blob[:head], blob[head:], []
    while rest:
        (length,) = struct.unpack(">I", rest[:4])
        parts.append(rest[: 4 + length])
        rest = rest[4 + length :]
    return frame, parts


def frame(count: int, size: int) -> bytes:
    return MAGIC + struct.pack(">IQ", count, size)


@pytest.mark.parametrize("size", [0, 1, STEP - 1, STEP, STEP + 1, STEP * 10 + 7])
def test_segmented_round_trip(size: int) -> None:
    store = FileStore([KEY], segment_size=STEP)
    data = sample(size)
    sealed = store._seal(data)
    assert bytes(sealed).startswith(MAGIC)
    assert len(segments(bytes(sealed))[1]) == max(1, -(-size // STEP))
    assert store.decrypt(bytes(sealed)) == data
    assert store.decrypt(bytearray(sealed)) == data


@pytest.mark.parametrize("size", [0, 1, STEP, STEP + 1])
def test_files_up_to_one_segment_stay_one_token(size: int) -> None:
    store = FileStore([KEY], segment_size=STEP)
    stored = store.encrypt_file(sample(size))
    assert stored.startswith(b"gAAAAA") is (size <= STEP)
    assert store.decrypt(stored) == sample(size)


def test_default_segment_size_round_trip_and_token_length() -> None:
    store = FileStore([KEY])
    data = sample(SEGMENT_SIZE * 3 + 5)
    stored = store.encrypt_file(data)
    assert len(segments(bytes(stored))[1]) == 4
    assert store.decrypt(stored) == data
    for n in range(0, 100):  # the preallocated size is exactly Fernet's
        assert storage._token_length(n) == len(Fernet(KEY).encrypt(b"x" * n))


def test_old_single_token_files_still_read() -> None:
    data = sample(STEP * 5)
    assert FileStore([KEY], segment_size=STEP).decrypt(Fernet(KEY).encrypt(data)) == data


def test_no_plaintext_in_the_stored_bytes() -> None:
    data = b"Zebediah,person1@example.com\n" * 100
    stored = bytes(FileStore([KEY], segment_size=STEP).encrypt_file(data))
    assert b"Zebediah" not in stored and b"example.com" not in stored


def tampered_variants() -> list[tuple[str, bytes]]:
    store = FileStore([KEY], segment_size=STEP)
    data = sample(STEP * 4 + 3)
    sealed = bytes(store._seal(data))
    other = bytes(store._seal(sample(STEP * 4 + 3)))  # same shape, another file id
    head, parts = segments(sealed)
    _, other_parts = segments(other)
    return [
        ("dropped", frame(4, len(data)) + b"".join(parts[:1] + parts[2:])),
        ("dropped, size fixed", frame(4, len(data) - STEP) + b"".join(parts[:1] + parts[2:])),
        ("dropped last", frame(4, STEP * 4) + b"".join(parts[:4])),
        ("swapped", head + b"".join([parts[1], parts[0], *parts[2:]])),
        ("repeated", head + b"".join([parts[0], parts[0], *parts[2:]])),
        ("spliced", head + b"".join([parts[0], other_parts[1], *parts[2:]])),
        ("truncated segment", sealed[:-10]),
        ("truncated frame", sealed[: len(MAGIC) + 5]),
        ("trailing bytes", sealed + b"x"),
        ("flipped byte", sealed[:200] + bytes([sealed[200] ^ 1]) + sealed[201:]),
    ]


@pytest.mark.parametrize("name,blob", tampered_variants())
def test_tampered_segments_are_refused(name: str, blob: bytes) -> None:
    with pytest.raises(CSVDirectoryError):
        FileStore([KEY], segment_size=STEP).decrypt(blob)


def make_run() -> SyncRun:
    return runs.start_run(
        "default",
        runs.Upload("Users.csv", users_csv()),
        runs.Upload("Employees.csv", employees_csv([employee(1)])),
        ADMIN,
        enqueue=False,
    )


def test_large_files_are_read_in_pieces_on_both_stacks(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "_READ_CHUNK", 500)  # many windows, segments across them
    store = FileStore([derive_key(app.config["SECRET_KEY"])], segment_size=STEP)
    run = make_run()
    data = sample(STEP * 40 + 9)
    store.put(db.session, run, "extra", "extra.bin", data)
    store.put(db.session, run, "small", "small.bin", b"tiny")
    db.session.commit()
    run_id = run.id
    db.session.expire_all()
    run = db.session.get(SyncRun, run_id)
    assert "files" not in run.__dict__
    assert store.get(run, "extra") == data  # fetched with substr, window by window
    assert store.get(run, "small") == b"tiny"
    assert store.get_many(db.session, run_id, ["extra", "small"]) == {
        "extra": data, "small": b"tiny"
    }
    assert run.file("extra") is not None  # loaded: decrypted from the row in memory
    assert store.get(run, "extra") == data
    with pytest.raises(CSVDirectoryError):
        store.get(run, "missing")


def test_rotate_keys_re_encrypts_both_forms(app: Flask, stack: str) -> None:
    old_key = derive_key(app.config["SECRET_KEY"])
    store = FileStore([old_key], segment_size=STEP)
    run = make_run()
    large, small = sample(STEP * 6 + 1), sample(STEP // 2)
    store.put(db.session, run, "segmented", "a.bin", large)
    store.put(db.session, run, "legacy", "b.bin", b"")
    store.put(db.session, run, "small", "c.bin", small)
    db.session.flush()
    db.session.execute(  # a large file as the older version stored it: one token
        update(StoredFile)
        .where(StoredFile.run_id == run.id, StoredFile.role == "legacy")
        .values(ciphertext=Fernet(old_key).encrypt(large), size=len(large))
    )
    db.session.commit()
    new_key = Fernet.generate_key()
    rotating = FileStore([new_key, old_key], segment_size=STEP)
    assert rotating.rotate(db.session) >= 5
    db.session.commit()
    db.session.expire_all()
    only_new = FileStore([new_key], segment_size=STEP)
    run = db.session.get(SyncRun, run.id)
    assert only_new.get(run, "segmented") == large
    assert only_new.get(run, "legacy") == large
    assert only_new.get(run, "small") == small
    stored = dict(
        db.session.execute(
            select(StoredFile.role, StoredFile.ciphertext).where(StoredFile.run_id == run.id)
        ).all()
    )
    assert bytes(stored["legacy"]).startswith(MAGIC)  # upgraded to the segmented form
    with pytest.raises(CSVDirectoryError):
        FileStore([old_key], segment_size=STEP).decrypt(stored["segmented"])
