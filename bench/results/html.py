"""HTML building blocks of the report: escaping, tables, embedded images, collapsible sections, the
page's CSS. No external resources: the page must open offline."""

from __future__ import annotations

import html

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1250px;
color:#222;padding:0 1em;font-size:14px}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0;font-size:12px}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.legend,.note{font-size:12px;color:#555;max-width:1100px}.warn{color:#a60;font-weight:600}
.scroll{overflow-x:auto}img{max-width:100%;height:auto;display:block;margin:.4em 0}
.better{color:#060;font-weight:600}.worse{color:#a00;font-weight:600}.base{background:#eef}
details{margin:.3em 0}summary{cursor:pointer;font-weight:600}
code{font-size:12px}
"""

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
