"""Accessibility fixes to page bodies, as Sphinx and myst-nb write them.

- The bibliography: docutils writes `<div role="list" class="citation-list">` whose
  entries carry role="doc-biblioentry", which ARIA 1.2 deprecates and which is not
  a list item, so the list has no allowed children (axe: aria-required-children,
  serious). The entries become list items.
- myst-nb's hidden cells (tags hide-input, hide-cell...) open with
  `<summary aria-label="Toggle hidden content">` around the visible text "Show
  code cell content": a name unlike the text a speech-input user reads and says
  (axe: label-content-name-mismatch, serious). Without the label, the visible
  text names it.

Plain replacements of the exact markup: both come from fixed templates, and a
page whose markup changes is caught by the axe test in tests/test_book_browser.py.
"""

from __future__ import annotations

REPLACEMENTS = (
    ('role="doc-biblioentry"', 'role="listitem"'),
    ('<summary aria-label="Toggle hidden content">', "<summary>"),
)


def fix_page_body(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if not body:
        return
    for old, new in REPLACEMENTS:
        body = body.replace(old, new)
    context["body"] = body


def setup(app):
    app.connect("html-page-context", fix_page_body)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
