"""Sphinx configuration of lrexp's documentation site: Markdown pages (MyST), the furo theme, and API
pages from the public entry points' docstrings. Built with warnings as errors (tests/test_docs.py, which
CI runs): a broken link, a page outside the table of contents or a reference to a module that is gone
fails the build.

    sphinx-build -W --keep-going -n -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's lrexp, for autodoc, when it is not installed editable

project = "lrexp"
author = "the lrexp developers"
copyright = "2026, the lrexp developers"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.intersphinx"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# Every heading down to ####, anchored as GitHub anchors them, so that "page.md#a-heading" links resolve
# (and an anchor that no longer exists is a warning, hence an error).
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# The API pages: signatures and docstrings as written; no type hints (they name torch and omegaconf
# classes this site does not document, and the docstrings say what each argument is).
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
# No network at build time: references to torch's or Python's own objects stay plain text, never looked up.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
# Every reference to an lrexp name must resolve (a renamed or removed class fails the build); torch's,
# omegaconf's and Python's own classes, named in type hints, are left as plain text.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!lrexp\.).*")]

html_theme = "furo"
html_title = "lrexp"
html_static_path: list[str] = []
