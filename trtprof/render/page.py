"""The HTML kit both pages are built with: escaping, number formats, tables, figures, the page shell.

Why by hand rather than with a template engine: the pages are a handful of sections, and doing the
escaping in one visible place is the point. Every string that comes from a capture (model and
subgraph names, shapes, the command line, notes, paths) passes through `e()` here, or through
`figures.esc` inside plotly figures, whose JSON is embedded with `<`, `>` and `&` as \\u escapes so
nothing in it can close the <script> element. Nothing from a capture is ever executed or imported.
"""
from __future__ import annotations

import html
import shlex

import pandas as pd

from trtprof.render.figures import Fig

MAX_TABLE_ROWS = 200


def e(s) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if s is None else str(s), quote=True)


# -- number formatting ------------------------------------------------------------------------------------
def num(v, fmt: str, scale: float = 1.0) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "\u2014"
    return "\u2014" if v != v else format(v / scale, fmt)


def us(v) -> str:
    return num(v, ".1f", 1e3)


def ms(v) -> str:
    return num(v, ".3f")


def nbytes(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "\u2014"
    if v != v:
        return "\u2014"
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.1f} {unit}"
    return f"{v:.0f} B"


def pct(v) -> str:
    return num(v, ".0%")


def table(df: pd.DataFrame, cols: list[tuple[str, str, object]], max_rows: int = MAX_TABLE_ROWS) -> str:
    """An HTML table of `df`: cols are (column, header, formatter or None for escaped text)."""
    if df is None or df.empty:
        return '<p class="muted">nothing to show</p>'
    head = "".join(f"<th>{e(h)}</th>" for _, h, _ in cols)
    body = []
    for row in df.head(max_rows).itertuples(index=False):
        r = row._asdict()
        cells = []
        for c, _, f in cols:
            v = r.get(c)
            text = f(v) if f else ("" if v is None or (isinstance(v, float) and v != v) else str(v))
            cells.append(f'<td class="{"n" if f else "t"}">{e(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="muted">showing the first {max_rows} of {len(df)} rows</p>' if len(df) > max_rows else "")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'


# -- figures ----------------------------------------------------------------------------------------------
class Figures:
    def __init__(self):
        self.n = 0

    def __call__(self, fig: Fig) -> str:
        import plotly.io as pio

        js = pio.to_json(fig.to_dict(), validate=False, engine="json")
        js = js.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        self.n += 1
        return (f'<div class="trtprof-fig" id="fig{self.n}"></div>\n'
                f'<script>trtprofPlot("fig{self.n}", {js});</script>')


HEAD_JS = """
window.trtprofErrors = [];
function trtprofError(msg) {
  window.trtprofErrors.push(String(msg));
  var box = document.getElementById("trtprof-errors");
  if (box) { box.hidden = false; var li = document.createElement("li"); li.textContent = String(msg);
             box.querySelector("ul").appendChild(li); }
}
window.addEventListener("error", function (ev) { trtprofError(ev.message || "a script failed"); });
function trtprofPlot(id, fig) {
  try { Plotly.newPlot(id, fig.data, fig.layout, {responsive: true, displaylogo: false}); }
  catch (err) { trtprofError("figure " + id + " did not render: " + err); }
}
"""

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:16px 24px 64px;overflow-wrap:break-word}
h1{font-size:1.6em;margin:.4em 0 .1em} h2{font-size:1.25em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
.muted{color:#666;font-size:.92em} .verdict{font-size:1.35em;font-weight:600;margin:.5em 0}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 14px;margin:10px 0}
.warn{background:#fff4e5;border-color:#f0b45b} #trtprof-errors{background:#fde8e8;border-color:#e07070}
table{border-collapse:collapse;font-size:.9em;background:#fff} th,td{border:1px solid #e3e3e3;padding:3px 7px}
th{background:#f2f2f2;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto} code{background:#f2f2f2;padding:0 3px;border-radius:3px;word-break:break-all}
.trtprof-fig{background:#fff;border:1px solid #e3e3e3;border-radius:6px;margin:10px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0} dt{color:#666}
"""


def command(meta: dict) -> str:
    cmd = meta.get("command")
    if isinstance(cmd, (list, tuple)):
        return shlex.join(str(c) for c in cmd)
    return "" if cmd is None else str(cmd)


def document(title: str, body: str, figures: int, *, css: str = "", failed: str = "this page") -> str:
    """A whole self-contained page: plotly.js inlined, so it opens offline."""
    from plotly.offline import get_plotlyjs

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"trtprof-figures\" content=\"{figures}\"><title>{e(title)}</title>"
            f"<style>{CSS}{css}</style><script>{HEAD_JS}</script>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body><main>"
            f'<div id="trtprof-errors" class="card" hidden><b>Parts of {e(failed)} failed to display:</b><ul></ul></div>'
            f"{body}</main></body></html>\n")
