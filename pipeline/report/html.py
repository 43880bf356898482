"""Small HTML building blocks of the report page: escaping, tables, image grids and the page frame."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; --ok: #1a7f37; --bad: #cf222e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
header { background: #24292f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; }
header .meta { color: #c9d1d9; font-size: 12.5px; margin-top: 4px; }
nav { padding: 8px 32px; border-bottom: 1px solid var(--line); background: var(--bg); font-size: 13px; }
nav a { margin-right: 14px; color: #0969da; text-decoration: none; }
main { padding: 8px 32px 40px; max-width: 1400px; }
section { margin-top: 26px; }
h2 { font-size: 18px; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin: 0 0 10px; }
h3 { font-size: 14.5px; margin: 16px 0 6px; }
p.note { color: var(--muted); font-style: italic; margin: 4px 0; }
p.caption { color: var(--muted); font-size: 12.5px; margin: 4px 0 8px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 9px; text-align: right; white-space: nowrap; }
th { background: var(--bg); font-weight: 600; white-space: normal; vertical-align: bottom; max-width: 130px; }
.scroll { overflow-x: auto; max-width: 100%; }
td.text, th.text { text-align: left; white-space: normal; }
td.text { max-width: 420px; }
tr.failed td { color: var(--bad); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--cell, 360px), 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px; background: #fff; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 12.5px; color: var(--muted); margin-top: 4px; }
.examples { display: flex; flex-direction: column; gap: 10px; }
.example { display: flex; gap: 8px; align-items: flex-start; border: 1px solid var(--line);
           border-radius: 6px; padding: 8px; }
.example .tile { width: 128px; text-align: center; font-size: 11.5px; color: var(--muted); }
.example .tile img { width: 124px; height: 124px; object-fit: cover; border: 4px solid transparent; border-radius: 3px; }
.example .query img { border-color: #8c959f; }
.example .hit img { border-color: var(--ok); }
.example .miss img { border-color: var(--bad); }
.example .sep { width: 1px; align-self: stretch; background: var(--line); margin: 0 4px; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any, digits: int = 2) -> str:
    """A table cell's text: numbers rounded, missing values as a dash."""
    if x is None or x == "":
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if x != x:  # NaN
            return "–"
        return f"{x:.{digits}f}"
    return str(x)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def caption(text: str) -> str:
    return f'<p class="caption">{esc(text)}</p>'


@dataclass
class Col:
    """A table column: header, key of the row dict, and whether it is text (left-aligned)."""

    title: str
    key: str
    text: bool = False
    digits: int = 2


def table(rows: Sequence[dict], cols: Sequence[Col], row_class: str | None = None) -> str:
    """An HTML table of dict rows; `row_class` names a row key whose value becomes the <tr> class."""
    head = "".join(f'<th class="text">{esc(c.title)}</th>' if c.text else f"<th>{esc(c.title)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = f' class="{esc(r.get(row_class))}"' if row_class and r.get(row_class) else ""
        cells = "".join(
            f'<td class="text">{esc(fmt(r.get(c.key), c.digits))}</td>' if c.text
            else f"<td>{esc(fmt(r.get(c.key), c.digits))}</td>" for c in cols)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def figure(src: str, text: str = "", alt: str = "") -> str:
    cap = f"<figcaption>{esc(text)}</figcaption>" if text else ""
    return f'<figure><img src="{esc(src)}" alt="{esc(alt or text)}" loading="eager">{cap}</figure>'


def grid(items: Iterable[str], cell_px: int = 360) -> str:
    return f'<div class="grid" style="--cell: {cell_px}px">{"".join(items)}</div>'


@dataclass
class Section:
    id: str
    title: str
    body: str
    missing: bool = False     # True when the body is only the one-line note of what is absent


def page(title: str, meta: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.id)}" data-missing="{str(s.missing).lower()}"><h2>{esc(s.title)}</h2>{s.body}</section>'
        for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>{esc(title)}</h1><div class=\"meta\">{esc(meta)}</div></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
