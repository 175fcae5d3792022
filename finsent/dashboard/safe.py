"""Feed text made safe to show: escaped HTML, checked links, CSV without formulas.

Headlines, sources, words and URLs come from outside. The dashboard shows them as dataframe
cells (plain text) or, where words are highlighted, as HTML built here from text escaped
character by character, so neither HTML nor Markdown in a headline can do anything. A link
is shown only as it came and only when ``core.safety.strict_web_link`` passes it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

import pandas as pd

from finsent.core.safety import spreadsheet_cell, strict_web_link

# Characters that mean something to HTML or to Markdown (emphasis, links, code, maths, lists,
# tables, autolinks). Each becomes a numeric character reference: the browser shows the
# character, and Markdown treats a reference as literal text, never as syntax.
_SPECIAL = frozenset("&<>\"'`*_{}[]()#+-.!|~$\\:=^/@%")
_WORD = re.compile(r"\w+", re.UNICODE)


def escape_text(text: object) -> str:
    """Text that shows as itself inside HTML and inside Streamlit Markdown; line breaks and
    other control characters become spaces."""
    out = []
    for ch in str(text):
        if ch in _SPECIAL:
            out.append(f"&#{ord(ch)};")
        elif ch < " " or ch == "\x7f":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def highlight(text: object, words: Iterable[str]) -> str:
    """``text`` escaped, with each whole word among ``words`` (case-insensitive, as the model's
    attended words are lower-case) wrapped in ``<mark>``."""
    wanted = {w.lower() for w in words if w and _WORD.fullmatch(w)}
    source = str(text)
    parts: list[str] = []
    last = 0
    for match in _WORD.finditer(source):
        if match.group().lower() not in wanted:
            continue
        parts.append(escape_text(source[last : match.start()]))
        parts.append(f"<mark>{escape_text(match.group())}</mark>")
        last = match.end()
    parts.append(escape_text(source[last:]))
    return "".join(parts)


def headline_html(
    title: object,
    words: Iterable[str] = (),
    *,
    url: object = None,
    meta: str = "",
) -> str:
    """One headline as a single line of HTML: the title with its attended words marked,
    then ``meta`` (escaped) and a link to the source when the URL is a safe one."""
    link = strict_web_link(url)
    tail = f" <small>{escape_text(meta)}</small>" if meta else ""
    if link:
        href = html.escape(link, quote=True)
        tail += f' <a href="{href}" target="_blank" rel="noopener noreferrer nofollow">source</a>'
    return f"<div>{highlight(title, words)}{tail}</div>"


def headlines_html(rows: Iterable[str]) -> str:
    """Headline lines as one HTML block: no blank line inside, so Markdown leaves it alone."""
    return "<div>" + "".join(rows) + "</div>"


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV, with text cells that a spreadsheet would run as a formula
    (starting with = + - @, a tab or a carriage return) prefixed by a quote."""
    safe = frame.copy()
    for name in safe.columns:
        if safe[name].dtype == object or pd.api.types.is_string_dtype(safe[name]):
            safe[name] = safe[name].map(spreadsheet_cell)
    return safe.to_csv(index=False).encode("utf-8")
