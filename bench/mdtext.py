"""Text from records, made safe to put in the report's markdown and the HTML made from it.

A record's names (a set's directory, a cell, a configuration value, a PTB word such as
``<unk>``) are data, not markup: in markdown, ``<unk>`` would vanish as an unknown HTML tag
and ``[x](javascript:...)`` would become a link, and the HTML version would carry a
``<script>`` from a hostile file into a page people open. Every such string goes through
:func:`text` (or :func:`code`) on its way into the report.
"""
from __future__ import annotations

import re

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MARKDOWN = re.compile(r"([\\`*\[\]|])")  # what starts emphasis, code, links or ends a table cell


def text(value: object) -> str:
    """``value`` as plain text in one line of markdown (a table cell, a sentence)."""
    flat = " ".join(str(value).split())
    flat = "".join(_ENTITIES.get(c, c) for c in flat)
    return _MARKDOWN.sub(r"\\\1", flat)


def code(value: object) -> str:
    """``value`` as inline code; markdown escapes what is inside a code span itself. A pipe
    would still end a table cell, so it is written as its entity-free look-alike."""
    flat = " ".join(str(value).split()).replace("|", "¦")
    return f"`` {flat} ``" if "`" in flat else f"`{flat}`"
