"""API tokens: created by an admin, shown once, stored hashed, scoped to one organization.

A token reads ``csvd_<prefix>_<secret>``; only its SHA-256 is stored, with the short prefix kept
in clear so the settings page can tell tokens apart.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from .extension import get_state
from .models import ApiToken, TokenScope, utcnow

TOKEN_PREFIX = "csvd_"
#: last_used_at is written at most this often per token (keeps reads cheap)
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    org: str,
    name: str,
    created_by: str | None,
    scopes: tuple[TokenScope, ...] = (TokenScope.API,),
) -> tuple[ApiToken, str]:
    """Create a token for ``scopes`` (the CSV API, SCIM, or both); return its row and the
    plaintext (shown to the admin once, never again)."""
    name = name.strip()
    if not name:
        raise ValueError("A token needs a name")
    if not scopes:
        raise ValueError("A token needs a scope: the CSV API, SCIM, or both")
    prefix = secrets.token_hex(4)
    plaintext = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        org=org, name=name[:255], token_hash=_hash(plaintext), prefix=prefix,
        created_by=created_by, scopes=" ".join(TokenScope(s).value for s in scopes),
    )
    session = get_state().session
    session.add(token)
    session.commit()
    return token, plaintext


def list_tokens(org: str) -> list[ApiToken]:
    """The organization's tokens, newest first (revoked ones included)."""
    return list(
        get_state().session.scalars(
            select(ApiToken).where(ApiToken.org == org).order_by(ApiToken.created_at.desc())
        )
    )


def revoke_token(org: str, token_id: int) -> bool:
    """Revoke one of the organization's tokens; False when it has no such active token."""
    session = get_state().session
    token = session.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.org == org)
    )
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    session.commit()
    return True


def authenticate(plaintext: str | None) -> ApiToken | None:
    """The active token matching ``plaintext`` (recording its use), or ``None``."""
    if not plaintext or not plaintext.startswith(TOKEN_PREFIX):
        return None
    session = get_state().session
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(plaintext)))
    if token is None or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        try:
            session.commit()
        except OperationalError:  # another writer holds the database (SQLite): note it later
            session.rollback()
            token = session.get(ApiToken, token.id)
    return token


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header value."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
