"""Adapters shipped with flask-csvdirectory."""

from .sqlalchemy import AccessMapping, PersonMapping, SQLAlchemyDirectoryAdapter

__all__ = ["AccessMapping", "PersonMapping", "SQLAlchemyDirectoryAdapter"]
