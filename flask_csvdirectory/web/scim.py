"""SCIM 2.0 endpoints: thin Flask views over :mod:`flask_csvdirectory.scim`.

Every request under ``CSVDIRECTORY_SCIM_URL_PREFIX`` needs a bearer API token with the SCIM
scope, for an organization whose SCIM switch is on (settings page; off by default). Writes hold
the organization's write lock (:mod:`~flask_csvdirectory.locks`) from the read they start with
to their commit, so they never interleave with each other or with a CSV apply; each is recorded
in the directory's history. Errors are SCIM error bodies (``application/scim+json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from flask import Blueprint, Response, current_app, request
from scim2_models import (
    ConflictException,
    ForbiddenException,
    PayloadTooLargeException,
    SCIMException,
    UnauthorizedException,
    UniquenessException,
)
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, scoped_session
from werkzeug.exceptions import RequestEntityTooLarge

from ..extension import get_state
from ..history import record_scim_write
from ..locks import OrganizationBusy, organization_lock
from ..models import TokenScope
from ..runs import get_settings
from ..scim import (
    DirectoryScimHandler,
    DirectoryScimService,
    DirectoryStorage,
    EncodedDocument,
    ScimWrite,
    build_service,
    scim_validator,
)
from .auth import current_actor, load_token
from .uploads import limit_body

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
#: Seconds a client is told to wait before retrying a write refused as busy.
RETRY_AFTER = 2


def create_blueprint(config: dict[str, Any]) -> Blueprint:
    """Build the SCIM blueprint from the extension's config (mounted at ``SCIM_URL_PREFIX``)."""
    blueprint = Blueprint("csvdirectory_scim", __name__)
    service = build_service()
    prefix = "/" + str(config["SCIM_URL_PREFIX"]).strip("/")

    @blueprint.route("/", defaults={"path": ""}, methods=METHODS, strict_slashes=False)
    @blueprint.route("/<path:path>", methods=METHODS)
    def endpoint(path: str) -> Response:
        """Serve any SCIM request (routing is the SCIM service's)."""
        return _serve(service, prefix, path)

    return blueprint


def _serve(service: DirectoryScimService, prefix: str, path: str) -> Response:
    state = get_state()
    write = request.method != "GET" and not path.rstrip("/").endswith(".search")
    try:
        # who is asking first: an anonymous, bad or unauthorized token never gets its body read
        token = load_token()
        if token is None:
            raise UnauthorizedException(detail="A valid bearer API token is required.")
        if not token.allows(TokenScope.SCIM):
            raise ForbiddenException(
                detail="This token is not for SCIM; create a token with the SCIM scope."
            )
        settings = get_settings(token.org)
        if not settings.scim_enabled:
            raise ForbiddenException(
                detail="SCIM provisioning is turned off for this organization; an admin can "
                "turn it on in Settings > Integrations > CSV Import."
            )
        # then how much it may send (authorized first: the body is read only now)
        limit = int(state.config["MAX_SCIM_BYTES"])
        limit_body(limit + 1)  # a streamed body stops at the limit: one byte more tells
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            body = None
        if body is None or len(body) > limit:
            raise PayloadTooLargeException(
                detail=f"The request body is larger than the limit of {limit:,} bytes."
            )
        scim_request = ScimRequest(
            method=request.method,
            base_url=request.host_url.rstrip("/") + request.script_root + prefix,
            path="/" + path,
            query=request.args.to_dict(),
            headers=list(request.headers.items()),
            body=body,
        )
        actor, org = current_actor(), token.org
        hard_delete = bool(settings.scim_hard_delete)
        state.session.commit()  # hold no database lock while waiting for the organization

        def record(change: ScimWrite) -> None:
            record_scim_write(
                org, actor, action=change.action, resource_type=change.resource_type,
                resource_id=change.resource_id, before=change.before, after=change.after,
            )

        storage = DirectoryStorage(
            state.adapter, org, validate=scim_validator(state.adapter.field_limits()),
            record=record,
            hard_delete=hard_delete,
            before_commit=_before_commit(state.session),
        )
        lock = (
            organization_lock(state.db.engine, org, state.config["SCIM_LOCK_TIMEOUT"])
            if write
            else nullcontext()
        )
        with lock:
            response = DirectoryScimHandler(service, storage).handle(scim_request)
            state.session.commit()  # history entries not committed with their change (if any)
    except SCIMException as exc:
        state.session.rollback()
        response = service.error_response(exc)
        if exc.status == 401:
            response.headers.setdefault("WWW-Authenticate", 'Bearer realm="SCIM"')
    except IntegrityError as exc:  # a unique constraint the checks could not see coming
        state.session.rollback()
        current_app.logger.info("SCIM %s /%s: %s", request.method, path, exc.orig)
        response = service.error_response(
            UniquenessException(detail="A value that must be unique is already taken.")
        )
    except (OrganizationBusy, OperationalError) as exc:
        state.session.rollback()
        if isinstance(exc, OperationalError) and "locked" not in str(exc).lower():
            current_app.logger.exception("SCIM %s /%s failed", request.method, path)
            response = service.error_response(exc)
        else:
            response = service.error_response(
                ConflictException(detail=str(exc) if isinstance(exc, OrganizationBusy) else
                                  "The directory is busy; retry shortly.")
            )
            response.headers["Retry-After"] = str(RETRY_AFTER)
    except Exception as exc:  # an adapter failure: a SCIM 500, logged with its traceback
        state.session.rollback()
        current_app.logger.exception("SCIM %s /%s failed", request.method, path)
        response = service.error_response(exc)
    return _to_flask(response)


def _before_commit(
    session: Any,
) -> Callable[[Callable[[], None]], AbstractContextManager[None]]:
    """``before_commit(action)`` for :class:`~flask_csvdirectory.scim.DirectoryStorage`: for the
    block, ``action`` runs in the session's ``before_commit`` event, inside the transaction
    being committed (so a SCIM write and its history entry are one commit)."""

    @contextmanager
    def hook(action: Callable[[], None]) -> Iterator[None]:
        target = session() if isinstance(session, scoped_session) else session

        def listener(_session: Session) -> None:
            action()

        event.listen(target, "before_commit", listener)
        try:
            yield
        finally:
            event.remove(target, "before_commit", listener)

    return hook


def _to_flask(response: ScimResponse) -> Response:
    if response.body is None:
        body = ""
    elif isinstance(response.body, EncodedDocument):
        body = response.body.text
    else:
        body = json.dumps(response.body)
    return Response(body, status=int(response.status), headers=response.headers)
