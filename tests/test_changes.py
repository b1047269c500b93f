"""The change set: counts, canonical form, storage round trip, the threshold rule."""

from __future__ import annotations

import pytest

from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet, exceeds_threshold


def sample() -> ChangeSet:
    return ChangeSet.of(
        [
            Change(ChangeKind.ACCESS_REVOKED, "old@x.test", "3", {"role": "Admin"}, None),
            Change(ChangeKind.EMPLOYEE_CREATED, "new@x.test", None, None, {"team": "Red"}),
            Change(ChangeKind.TEAM_CREATED, "Red", None, None, {"name": "Red"}),
        ]
    )


def test_of_sorts_in_apply_order_and_counts_every_kind() -> None:
    changeset = sample()
    assert [c.kind for c in changeset] == [
        ChangeKind.TEAM_CREATED, ChangeKind.EMPLOYEE_CREATED, ChangeKind.ACCESS_REVOKED
    ]
    counts = changeset.counts()
    assert list(counts) == [kind.value for kind in ChangeKind]
    assert counts["team_created"] == 1 and counts["employee_updated"] == 0
    assert changeset.count == sum(counts.values()) == 3


def test_storage_round_trip_keeps_the_fingerprint() -> None:
    changeset = sample()
    again = ChangeSet.from_bytes(changeset.to_bytes())
    assert again.changes == changeset.changes
    assert again.fingerprint() == changeset.fingerprint()
    canonical = changeset.to_json()
    assert changeset.fingerprint(canonical) == changeset.fingerprint()


def test_a_different_plan_has_a_different_fingerprint() -> None:
    changed = sample()
    changed.changes[1] = Change(ChangeKind.EMPLOYEE_CREATED, "new@x.test", None, None,
                                {"team": "Blue"})
    assert changed.fingerprint() != sample().fingerprint()


@pytest.mark.parametrize(
    ("count", "threshold", "percent", "size", "waits"),
    [
        (50, 50, None, 0, False),  # at the threshold: auto-approved
        (51, 50, None, 0, True),
        (5, 50, 10.0, 100, False),
        (11, 50, 10.0, 100, True),  # above 10% of the directory
        (11, 50, 10.0, 0, False),  # an empty directory has no percentage
        (10**6, None, None, 10, False),  # both tests off
    ],
)
def test_threshold_rule(
    count: int, threshold: int | None, percent: float | None, size: int, waits: bool
) -> None:
    assert exceeds_threshold(
        count, threshold=threshold, percent=percent, directory_size=size
    ) is waits
