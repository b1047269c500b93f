"""SCIM values through the CSV's validators.

A small seam: SCIM calls :func:`validate_scim_value` for every text it stores. It delegates to
:mod:`flask_csvdirectory.validation` when that module is present (the CSV's validators: lengths,
invisible and control characters, email syntax); until then it applies the same rules itself.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

#: Longest text stored in any field (the CSV's limit).
MAX_LENGTH = 200
MAX_EMAIL_LENGTH = 254


def validate_scim_value(field: str, value: str) -> str:
    """``value`` trimmed, or ``ValueError`` saying what is wrong with it."""
    value = value.strip()
    limit = MAX_EMAIL_LENGTH if field in ("userName", "emails.value") else MAX_LENGTH
    if len(value) > limit:
        raise ValueError(f"is {len(value)} characters long; the limit is {limit}")
    bad = next(
        (c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")),
        None,
    )
    if bad is not None:
        raise ValueError(f"contains the invisible or control character U+{ord(bad):04X}")
    if field == "emails.value" and value:
        try:
            validate_email(value, check_deliverability=False, test_environment=True)
        except EmailNotValidError as exc:
            raise ValueError(f"{value!r} is not a valid email address: {exc}") from None
    return value
