"""Sphinx configuration: the Markdown pages (MyST) plus an API reference from the docstrings.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (``make test`` does).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

project = "flask-csvdirectory"
author = "flask-csvdirectory contributors"
copyright = "2026, flask-csvdirectory contributors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # SQLAlchemy's own docstrings reference its own docs
autodoc_default_options = {"members": True, "show-inheritance": True}
# names in annotations that autodoc cannot resolve are not worth a warning
nitpicky = False

intersphinx_mapping: dict[str, tuple[str, None]] = {}
html_theme = "alabaster"
html_title = "flask-csvdirectory"
