"""The thin web layer: dashboard pages, JSON API and SCIM endpoints over :mod:`..runs`.

Registering a blueprint must stay cheap: every process that creates the app pays for it, a
``flask csvdirectory sync`` or an RQ worker too. So the SCIM blueprint registered here routes to
a view that imports :mod:`.scim` (scim2-models, scim2-server, pydantic: about a second) on the
first SCIM request, not at start-up.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response

if TYPE_CHECKING:
    from ..scim import DirectoryScimService

#: The methods SCIM routes answer (as :data:`.scim.METHODS`, kept here to stay import-free).
SCIM_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

_service: DirectoryScimService | None = None
_service_lock = threading.Lock()


def scim_blueprint(config: dict[str, Any]) -> Blueprint:
    """The SCIM blueprint (mounted at ``SCIM_URL_PREFIX``), its libraries loaded on first use.

    Same name, rules and endpoint as :func:`.scim.create_blueprint`, which builds it eagerly.
    """
    blueprint = Blueprint("csvdirectory_scim", __name__)
    prefix = "/" + str(config["SCIM_URL_PREFIX"]).strip("/")

    def endpoint(path: str) -> Response:
        """Serve any SCIM request (routing is the SCIM service's)."""
        from .scim import _serve

        return _serve(_scim_service(), prefix, path)

    blueprint.add_url_rule(
        "/", "endpoint", endpoint, defaults={"path": ""}, methods=SCIM_METHODS,
        strict_slashes=False,
    )
    blueprint.add_url_rule("/<path:path>", "endpoint", endpoint, methods=SCIM_METHODS)
    return blueprint


def _scim_service() -> DirectoryScimService:
    """The SCIM service, built on the first request (it is stateless: one per process)."""
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                from ..scim import build_service

                _service = build_service()
    return _service
