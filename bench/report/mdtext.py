"""Text from records, made safe to put in the report's markdown and the HTML made from it.

A record's names (a set's directory, a cell, a configuration value, a PTB word such as
``<unk>``) are data, not markup: in markdown, ``<unk>`` would vanish as an unknown HTML tag
and ``[x](javascript:...)`` would become a link, and the HTML version would carry a
``<script>`` from a hostile file into a page people open. Every such string goes through
:func:`text` (or :func:`code`) on its way into the report; :mod:`bench.report.html`
sanitizes the page besides, so a string that slipped past both would still be inert.

Both keep a value on one line and show it as written: whitespace runs become one space,
and control and bidirectional-formatting characters (invisible, or reordering what is
shown; Python-Markdown's own placeholders are control characters) are shown as escapes
such as ``\\x07``, never dropped.
"""
from __future__ import annotations

import itertools
import re

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MARKDOWN = re.compile(r"([\\`*\[\]|])")  # what starts emphasis, code, links or ends a table cell
# `_` emphasises only at a word's edge (Python-Markdown's smart emphasis), and an escaped
# `_` beside one makes an edge of its own (``__0__``): an underscore between two letters or
# digits is left, which keeps total_series_length as written, and every other is escaped
_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
# what makes a line a heading, quote or list item when the value starts a line (a list item's text)
_BLOCK_START = re.compile(r"^([#>+-]|\d+(?=\. ))")
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def one_line(value: object) -> str:
    """``value`` as one line of plain text: whitespace runs as one space, invisible
    characters as visible escapes."""
    flat = " ".join(str(value).split())
    return _INVISIBLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), flat)


def text(value: object) -> str:
    """``value`` as plain text in one line of markdown (a table cell, a sentence)."""
    flat = "".join(_ENTITIES.get(c, c) for c in one_line(value))
    flat = _UNDERSCORE.sub(r"\\_", _MARKDOWN.sub(r"\\\1", flat))
    return _BLOCK_START.sub(lambda m: m.group() + "\\" if m.group()[0].isdigit() else "\\" + m.group(), flat, count=1)


def code(value: object) -> str:
    """``value`` as inline code. The fence is a run of backticks of a length that no run
    inside the value has (CommonMark's rule, which Python-Markdown follows), so no value
    ends the span early. A value with a pipe is written as :func:`text` instead: GitHub
    ends a table cell at a pipe even inside code, and a backslash before it would show in
    Python-Markdown's code."""
    flat = one_line(value)
    if "|" in flat:
        return text(flat)
    if not flat:
        return "` `"
    runs = {len(run) for run in re.findall("`+", flat)}
    if not runs:
        return f"`{flat}`"
    fence = "`" * next(n for n in itertools.count(1) if n not in runs)
    return f"{fence} {flat} {fence}"  # the spaces keep a backtick at either end off the fence
