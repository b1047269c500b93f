"""The integrator JSON API."""

from __future__ import annotations

from typing import Any

from flask import Blueprint


def create_blueprint(config: dict[str, Any]) -> Blueprint:
    """Build the JSON API blueprint from the extension's config."""
    return Blueprint("csvdirectory_api", __name__)
