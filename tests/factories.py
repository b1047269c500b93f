"""Build CSV files for tests."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping

EMPLOYEE_HEADER = ["email", "employee_id", "first_name", "last_name", "team", "title"]
USER_HEADER = ["email", "name", "role", "teams"]


def to_csv(header: list[str], rows: Iterable[Mapping[str, str] | list[str]]) -> bytes:
    """CSV bytes with ``header`` and ``rows`` (dicts by column, or lists)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(h, "") for h in header] if isinstance(row, Mapping) else row)
    return out.getvalue().encode()


def employee(n: int, team: str = "Sales", **fields: str) -> dict[str, str]:
    """Employee row number ``n``."""
    row = {
        "email": f"person{n}@example.com",
        "employee_id": f"E{n:06d}",
        "first_name": f"First{n}",
        "last_name": f"Last{n}",
        "team": team,
        "title": "Associate",
    }
    row.update(fields)
    return row


def employees_csv(rows: Iterable[Mapping[str, str]]) -> bytes:
    return to_csv(EMPLOYEE_HEADER, rows)


def users_csv(rows: Iterable[Mapping[str, str]] | None = None) -> bytes:
    """Users.csv; by default just the example platform's admin."""
    if rows is None:
        rows = [{"email": "admin@example.com", "name": "Ada Admin", "role": "Admin", "teams": "*"}]
    return to_csv(USER_HEADER, rows)


def admin_row() -> dict[str, str]:
    return {"email": "admin@example.com", "name": "Ada Admin", "role": "Admin", "teams": "*"}


def stored_role(role: str) -> str:
    """A stored file's role with its recording's prefix (``cs3fa2.00001``) written ``cs.``: the
    prefix is new for every recording of a change set."""
    return re.sub(r"^cs[0-9a-f]{4}\.", "cs.", role)
