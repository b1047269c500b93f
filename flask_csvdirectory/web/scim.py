"""SCIM 2.0 endpoints."""

from __future__ import annotations

from typing import Any

from flask import Blueprint


def create_blueprint(config: dict[str, Any]) -> Blueprint:
    """Build the SCIM blueprint from the extension's config."""
    return Blueprint("csvdirectory_scim", __name__)
