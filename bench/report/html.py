"""report.html: the markdown report as one self-contained page, since results are shared as
pages. The markdown is rendered by Python-Markdown (tables extension); every plot is
embedded as a data URI, so the page needs no network and no files beside it. The page has
no scripts: what came from records was escaped when the markdown was written
(:mod:`bench.report.mdtext`), and the HTML that markdown made is then sanitized against an
allowlist of the elements and attributes a report uses (nh3, the Ammonia sanitizer), so a
string that escaped the escaping, or a flaw in markdown's handling of one, still runs
nothing: no script or style element, no event attribute, no link or image to another
scheme than the page's own anchors and embedded plots.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from bench.errors import BenchError
from bench.storage import atomic_write_bytes

# Readable tables without any external stylesheet. A table fits the page where it can: its
# headers wrap (after a `_` or `/` too) and so do its long text cells (a configuration, a
# CPU name), while numbers stay on one line; one still too wide scrolls in its own box,
# its first column (what the row is) staying in view.
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; line-height: 1.45; color: #1a1a1a; }
div.table { overflow-x: auto; margin: 0.5em 0 1.2em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
td { white-space: nowrap; background: #fff; }
td.long { white-space: normal; min-width: 8em; }
th { background: #f3f3f3; white-space: normal; min-width: 3em; }
tr:nth-child(even) td { background: #fafafa; }
th:first-child, td:first-child { position: sticky; left: 0; }
code { background: #f3f3f3; padding: 0 0.25em; border-radius: 3px; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; border: 1px solid #e5e5e5; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
"""
# what the page adds after sanitizing, around and inside the tables markdown made
PAGE_TAGS = {"div", "wbr"}
# the page's elements: what report.md's markdown makes, and nothing else (a raw <a id>
# anchor marks each section), which is all the sanitizer lets through, and PAGE_TAGS
MARKDOWN_TAGS = {"h1", "h2", "h3", "h4", "p", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "code",
                 "pre", "strong", "em", "a", "img", "hr", "br", "blockquote"}
ALLOWED_TAGS = MARKDOWN_TAGS | PAGE_TAGS
ALLOWED_ATTRIBUTES = {"a": {"href", "id"}, "img": {"alt", "src", "title"}, "th": {"align"}, "td": {"align"}}
_IMAGE = re.compile(r'<img alt="([^"]*)" src="([^"]+)"\s*/?>')
_HEADER = re.compile(r"(<th\b[^>]*>)(.*?)(</th>)", re.S)
_CELL = re.compile(r"<td\b([^>]*)>(.*?)</td>", re.S)
_TAG = re.compile(r"(<[^>]*>)")
LONG_CELL = 16  # characters beyond which a cell of words may wrap (a number, "1,234 ± 56", never does)
_WORD = re.compile(r"[^\W\d_]{3,}")  # three letters in a row: words, not 2.5e-10
# Markdown features report.md never uses: reference-style links and images, <http://...>
# autolinks and mail links, two-space line breaks. Off, they cannot read a record's string
# as markup, and a report of 10,000 runs renders a quarter faster (each table cell was put
# to every pattern).
UNUSED_PATTERNS = ("reference", "image_reference", "short_reference", "short_image_ref", "autolink", "automail",
                   "linebreak")


def render(markdown_text: str, images: Path) -> str:
    """The page for ``markdown_text``, its images read from the directory ``images``. An
    image that is not a PNG file in that directory is a BenchError (the report drew every
    one it names, so a missing one is a fault, not something to show broken)."""
    import markdown
    import nh3

    md = markdown.Markdown(extensions=["tables"], output_format="html")
    for name in UNUSED_PATTERNS:
        if name in md.inlinePatterns:  # names as of Python-Markdown 3.4 to 3.11
            md.inlinePatterns.deregister(name)
    body = md.convert(markdown_text)
    body = _IMAGE.sub(lambda m: _embedded(m.group(1), m.group(2), images), body)
    body = nh3.clean(body, tags=MARKDOWN_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes={"data"}, link_rel=None,
                     attribute_filter=_own_urls)
    body = _fitted_tables(body)
    title = "cellbench report"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _fitted_tables(body: str) -> str:
    """Each table in its own scrolling box, its headers free to break after a ``_`` or
    ``/`` (``test_vs_published_pct``), its long text cells marked to wrap. Applied to the
    sanitized page, whose every ``<`` in a record's text is escaped: the patterns see the
    tags markdown made, never a record's string."""
    body = body.replace("<table>", '<div class="table"><table>').replace("</table>", "</table></div>")
    body = _HEADER.sub(lambda m: m.group(1) + _breakable(m.group(2)) + m.group(3), body)
    return _CELL.sub(_long_cell, body)


def _breakable(header: str) -> str:
    """A header's text with a line-break opportunity after each ``_`` and ``/`` (outside tags)."""
    return "".join(part if part.startswith("<") else re.sub(r"([_/])(?=\w)", r"\1<wbr>", part)
                   for part in _TAG.split(header))


def _long_cell(match: re.Match) -> str:
    attributes, content = match.group(1), match.group(2)
    text = html.unescape(_TAG.sub("", content))
    wrap = ' class="long"' if len(text) > LONG_CELL and " " in text.strip() and _WORD.search(text) else ""
    return f"<td{attributes}{wrap}>{content}</td>"


def _own_urls(element: str, attribute: str, value: str) -> str | None:
    """The URLs a report has: links to its own sections, its plots embedded as PNG data;
    any other is dropped (nh3 checks the scheme, this the rest)."""
    if attribute == "href":
        return value if value.startswith("#") else None
    if attribute == "src":
        return value if element == "img" and value.startswith("data:image/png;base64,") else None
    return value


def _embedded(alt: str, source: str, images: Path) -> str:
    name = html.unescape(source)
    path = images / name
    if "/" in name or "\\" in name or not name.endswith(".png") or not path.is_file():
        raise BenchError(f"report image {name!r} is not a PNG file in {images}")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{alt}" title="{alt}" src="data:image/png;base64,{data}">'


def write_html(markdown_text: str, images: Path, path: Path) -> Path:
    """Render and write the page atomically (a reader never sees half a page)."""
    atomic_write_bytes(path, render(markdown_text, images).encode("utf-8"))
    return path
