"""The thin web layer: dashboard pages, JSON API and SCIM endpoints over :mod:`..runs`."""
