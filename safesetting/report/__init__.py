"""Self-contained, offline HTML pages: the demo report and the public transparency report.

Everything is inline (CSS, charts as hand-built SVG); no script, no font, no image is fetched,
and every piece of text passes through :func:`safesetting.report.markup.esc`.
"""
