"""Who is calling: admin sessions for the dashboard, bearer tokens for the API and SCIM."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, g, jsonify, request
from flask_login import current_user

from ..extension import get_state
from ..models import ApiToken
from ..runs import Actor
from ..tokens import authenticate, bearer_token

F = TypeVar("F", bound=Callable[..., Any])


def admin_required(view: F) -> F:
    """Dashboard views: anonymous users go to the host's login; non-admins get 403."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        if not get_state().extension.is_admin(current_user):
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required_json(view: F) -> F:
    """For endpoints a page polls: 401 JSON when signed out, 403 JSON for non-admins (a
    redirect to the login page would look like a success to ``fetch``)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            response = jsonify(error="signed_out", message="You are signed out.")
            response.status_code = 401
            return response
        if not get_state().extension.is_admin(current_user):
            response = jsonify(
                error="forbidden", message="You no longer have access to this dashboard."
            )
            response.status_code = 403
            return response
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def current_org() -> str:
    """The organization of this request: the token's (API, SCIM) or the host's loader's."""
    token: ApiToken | None = g.get("csvdirectory_token")
    if token is not None:
        return token.org
    return get_state().extension.current_organization()


def current_actor() -> Actor:
    """Who acts in this request: the token (API, SCIM) or the signed-in admin."""
    token: ApiToken | None = g.get("csvdirectory_token")
    if token is not None:
        return Actor(id=f"token:{token.id}", name=f"API token {token.name!r}")
    return get_state().extension.actor(current_user)


def load_token() -> ApiToken | None:
    """Authenticate the request's bearer token and remember it on ``g`` (None when invalid)."""
    token = authenticate(bearer_token(request.headers.get("Authorization")))
    g.csvdirectory_token = token
    return token
