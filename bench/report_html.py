"""report.html: the markdown report as one self-contained page, since results are shared as
pages. The markdown is rendered by Python-Markdown (tables extension); every plot is
embedded as a data URI, so the page needs no network and no files beside it. The page has
no scripts; what came from records was escaped when the markdown was written
(:mod:`bench.mdtext`).
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from bench.errors import BenchError
from bench.storage import atomic_write_bytes

# Readable tables without any external stylesheet: wide tables scroll inside their box.
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; line-height: 1.45; color: #1a1a1a; }
table { border-collapse: collapse; font-size: 0.85em; display: block; overflow-x: auto; margin: 0.5em 0 1.2em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.55em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 0.25em; border-radius: 3px; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; border: 1px solid #e5e5e5; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
"""
_IMAGE = re.compile(r'<img alt="([^"]*)" src="([^"]+)"\s*/?>')


def render(markdown_text: str, images: Path) -> str:
    """The page for ``markdown_text``, its images read from the directory ``images``. An
    image that is not a PNG file in that directory is a BenchError (the report drew every
    one it names, so a missing one is a fault, not something to show broken)."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"], output_format="html")
    body = _IMAGE.sub(lambda m: _embedded(m.group(1), m.group(2), images), body)
    title = "cellbench report"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


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
