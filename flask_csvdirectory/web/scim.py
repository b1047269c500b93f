"""SCIM 2.0 endpoints: thin Flask views over :mod:`flask_csvdirectory.scim`.

Every request under ``CSVDIRECTORY_SCIM_URL_PREFIX`` is authenticated with a bearer API token
(:func:`~.auth.load_token`), turned into a :class:`~scim2_server.requests.ScimRequest` and served
by a :class:`~scim2_server.handler.ScimHandler` over the token's organization of the host
adapter. Errors are SCIM error bodies (``application/scim+json``).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, request
from scim2_models import PayloadTooLargeException, SCIMException, UnauthorizedException
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from werkzeug.exceptions import RequestEntityTooLarge

from ..extension import get_state
from ..scim import DirectoryScimService, DirectoryStorage, build_service
from .auth import load_token
from .uploads import limit_body

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


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
    try:
        # who is asking first: an anonymous or bad token never gets its body read
        token = load_token()
        if token is None:
            raise UnauthorizedException(detail="A valid bearer API token is required.")
        limit = int(get_state().config["MAX_SCIM_BYTES"])
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
        storage = DirectoryStorage(get_state().adapter, token.org)
        response = ScimHandler(service, storage).handle(scim_request)
    except SCIMException as exc:
        response = service.error_response(exc)
        if exc.status == 401:
            response.headers.setdefault("WWW-Authenticate", 'Bearer realm="SCIM"')
    except Exception as exc:  # an adapter failure: a SCIM 500, logged with its traceback
        current_app.logger.exception("SCIM %s /%s failed", request.method, path)
        response = service.error_response(exc)
    return _to_flask(response)


def _to_flask(response: ScimResponse) -> Response:
    body = "" if response.body is None else json.dumps(response.body)
    return Response(body, status=int(response.status), headers=response.headers)
