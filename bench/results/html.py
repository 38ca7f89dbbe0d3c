"""HTML building blocks of the report: escaping, tables, embedded images, collapsible blocks and the
page's sections (the page itself, with its CSS, is templates/report.html.j2). No external resources:
the page must open offline."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from markupsafe import Markup

LEFT = {"id", "scale", "activation", "norm", "status", "result", "group", "form", "note", "x", "cell", "key", "test",
        "budget", "changes", "diverged_at", "ci95", "effect"}


def e(v) -> str:
    return html.escape(str(v), quote=True)


def table(header, rows) -> str:
    """rows: lists of cell texts or (text, css class) pairs."""
    out = ['<div class="scroll"><table>', "<tr>" + "".join(
        f'<th class="l">{e(h)}</th>' if h in LEFT else f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for h, c in zip(header, row):
            text, klass = c if isinstance(c, tuple) else (c, "")
            klass = (klass + (" l" if h in LEFT else "")).strip()
            cells.append(f'<td class="{klass}">{e(text)}</td>' if klass else f"<td>{e(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def img(b64: str | None, alt: str) -> str:
    if not b64:
        return f'<p class="note">({e(alt)}: nothing to plot)</p>'
    return f'<img alt="{e(alt)}" src="data:image/png;base64,{b64}">'


def figure_html(alt: str, fn, *args) -> str:
    """A figure as an <img>, or a note saying why there is none (a figure that fails to draw must
    not lose the rest of the report)."""
    try:
        b64 = fn(*args)
    except Exception as exc:  # noqa: BLE001
        return f'<p class="note">({e(alt)} could not be drawn: {e(type(exc).__name__)}: {e(exc)})</p>'
    return img(b64, alt)


def details(summary: str, body: list[str], open_: bool = False) -> list[str]:
    """A collapsible block (closed by default): keeps a 100-cell page short."""
    return [f"<details{' open' if open_ else ''}><summary>{e(summary)}</summary>", *body, "</details>"]


def note(text: str, klass: str = "note") -> str:
    return f'<p class="{klass}">{e(text)}</p>'


@dataclass(frozen=True)
class Section:
    """One section of the report: its heading, the heading's id (a link target: report.html#anchor)
    and its body, HTML built from escaped parts."""

    title: str
    anchor: str
    html: Markup

    @classmethod
    def of(cls, title: str, anchor: str, parts: list[str]) -> "Section":
        return cls(title, anchor, Markup("\n".join(parts)))

    @classmethod
    def from_parts(cls, anchor: str, parts: list[str]) -> "Section | None":
        """A section from parts that open with their own <h2> (None for no parts)."""
        if not parts:
            return None
        m = re.fullmatch(r"<h2>(.*)</h2>", parts[0])
        if m is None:
            raise ValueError(f"section {anchor!r} does not open with an <h2> heading: {parts[0][:60]!r}")
        return cls.of(html.unescape(m.group(1)), anchor, parts[1:])
