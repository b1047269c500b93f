"""Admin dashboard pages (settings, templates, upload, history, run review)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint


def create_blueprint(config: dict[str, Any]) -> Blueprint:
    """Build the dashboard blueprint from the extension's config."""
    return Blueprint("csvdirectory", __name__, template_folder="../templates")
