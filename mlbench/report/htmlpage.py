"""The HTML report: one self-contained file that works offline (inline style and script, plots as data URIs).

Layout: a banner with the overall verdict and the verdict line, a navigation bar linking every
section, the sections (tables sortable by a click on a column header: numbers by value, sizes by
bytes, verdicts by severity, blanks last; a second click reverses), then the plots. No external
resource is referenced; without JavaScript the page reads the same, unsorted.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Optional

from .verdicts import Verdict

VERDICT_CLASS = {v.value: "v-" + v.name for v in Verdict}  # N/A -> v-NA: a class name cannot hold '/'
BANNER_RE = re.compile(r"^\*\*Verdict: ([A-Z/]+)\*\*\s*")  # the verdict line: **Verdict: X** (exit N): ...
EXIT_RE = re.compile(r"^\(exit (\d+)\):\s*")

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{padding:0 2em 2em;max-width:1500px}
h1{font-size:1.3em;margin:0 0 .3em}
h2{font-size:1.15em;margin:1.6em 0 .4em;scroll-margin-top:3.2em}
.banner{padding:1em 2em;border-bottom:4px solid #999;background:#eee}
.banner .verdict{font-size:2.4em;font-weight:700;letter-spacing:.04em;margin:.1em 0}
.banner p{margin:.25em 0}
.banner.v-FAIL{background:#fbe0e0;border-color:#c62828}.banner.v-FAIL .verdict{color:#b71c1c}
.banner.v-INCOMPLETE{background:#e6e6f5;border-color:#5c5ca8}.banner.v-INCOMPLETE .verdict{color:#3f3f8f}
.banner.v-WARN{background:#fdf3d6;border-color:#e0a800}.banner.v-WARN .verdict{color:#8a6500}
.banner.v-PASS{background:#e2f4e2;border-color:#2e7d32}.banner.v-PASS .verdict{color:#1b5e20}
.banner.v-INFO{background:#e6eef8;border-color:#4a74a8}.banner.v-INFO .verdict{color:#2c5282}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd;padding:.5em 2em;font-size:14px}
nav a{margin-right:1.2em;color:#1a4f8b;text-decoration:none;white-space:nowrap}
nav a:hover{text-decoration:underline}
table{border-collapse:collapse;margin:.6em 0;background:#fff}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left;vertical-align:top}
th{background:#eee;padding:0}
th button{all:unset;display:block;padding:3px 18px 3px 8px;cursor:pointer;font-weight:600;position:relative}
th button:focus-visible{outline:2px solid #1a4f8b}
th[aria-sort=ascending] button::after{content:"\\25B2";position:absolute;right:4px;font-size:9px;top:6px}
th[aria-sort=descending] button::after{content:"\\25BC";position:absolute;right:4px;font-size:9px;top:6px}
.v-FAIL{background:#f8c8c8}.v-WARN{background:#fbe8b0}.v-INCOMPLETE{background:#dde}.v-INFO{background:#e8eef8}
.v-PASS{background:#d8f0d8}.v-NA{background:#f0f0f0;color:#555}
p.note{color:#444;font-size:13px;max-width:110ch}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd;background:#fff}
figcaption{font-size:13px;color:#555}
@media print{nav{display:none}.banner{border-bottom-width:2px}}
"""

# Sorting: numbers (with %, and KiB/MiB/GiB/TiB sizes as bytes) by value, verdicts by severity, other text
# in natural order; blank cells last whichever the direction. Rows keep their order among equals.
SCRIPT = """
(function () {
  "use strict";
  var RANK = {"FAIL": 0, "INCOMPLETE": 1, "WARN": 2, "INFO": 3, "PASS": 4, "N/A": 5};
  var SCALE = {"": 1, "%": 1, "B": 1, "KiB": 1024, "MiB": 1048576, "GiB": 1073741824, "TiB": 1099511627776};
  var NUMBER = /^(-?\\d+(?:\\.\\d+)?(?:e[-+]?\\d+)?)\\s*(%|B|KiB|MiB|GiB|TiB)?(?![A-Za-z])/;
  function key(cell) {
    var text = cell.textContent.trim();
    if (text === "") { return null; }
    if (Object.prototype.hasOwnProperty.call(RANK, text)) { return [0, RANK[text]]; }
    var m = NUMBER.exec(text);
    if (m) { return [0, parseFloat(m[1]) * SCALE[m[2] || ""]]; }
    return [1, text.toLowerCase()];
  }
  function compare(a, b) {
    if (a[0] !== b[0]) { return a[0] - b[0]; }
    if (a[0] === 0) { return a[1] - b[1]; }
    return a[1].localeCompare(b[1], undefined, {numeric: true});
  }
  function sortBy(table, th) {
    var ths = table.tHead.rows[0].cells, column = th.cellIndex;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    for (var i = 0; i < ths.length; i++) { ths[i].setAttribute("aria-sort", "none"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, index) { return {row: row, index: index, key: key(row.cells[column])}; });
    keyed.sort(function (x, y) {
      if (x.key === null || y.key === null) {
        return x.key === y.key ? x.index - y.index : (x.key === null ? 1 : -1);
      }
      var c = compare(x.key, y.key);
      return (ascending ? c : -c) || x.index - y.index;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var button = th.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortBy(table, th); }); }
    });
  });
})();
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def verdict_class(cell: str) -> Optional[str]:
    """The colour class of a cell that is a verdict, or ends with one ("794.5 (80.3%) PASS")."""
    if cell in VERDICT_CLASS:
        return VERDICT_CLASS[cell]
    last = cell.rsplit(" ", 1)[-1] if " " in cell else None
    return VERDICT_CLASS.get(last) if last else None


def table(section) -> str:
    head = "".join(
        f"<th scope='col' aria-sort='none'><button type='button'>{esc(h)}</button></th>" for h in section.header
    )
    body = []
    for row in section.rows:
        cells = []
        for cell in map(str, row):
            cls = verdict_class(cell)
            cells.append(f"<td class='{cls}'>{esc(cell)}</td>" if cls else f"<td>{esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def banner(title: str, summary: list, verdict: Optional[str]) -> str:
    """The overall verdict, big, and the verdict line; the other summary lines under it."""
    first = summary[0] if summary else ""
    found = BANNER_RE.match(first)
    verdict = str(verdict) if verdict is not None else (found.group(1) if found else "")
    words = EXIT_RE.sub(r"exit code \1: ", BANNER_RE.sub("", first).replace("**", ""))
    rest = "".join(f"<p>{esc(line.replace('**', ''))}</p>" for line in summary[1:] if line)
    return (
        f"<header id='banner' class='banner {VERDICT_CLASS.get(verdict, '')}' role='status'>"
        f"<h1>{esc(title)}</h1><div class='verdict' id='verdict'>{esc(verdict)}</div>"
        f"<p class='words'>{esc(words)}</p>{rest}</header>"
    )


def plots(images: list) -> str:
    parts = ["<section id='plots'><h2>Plots</h2>"]
    for path in images:
        path = Path(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(
            f"<figure id='plot-{esc(path.stem)}'><img alt='{esc(path.stem)} plot' "
            f"src='data:image/png;base64,{data}'><figcaption>{esc(path.name)}</figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def page(title: str, summary: list, secs: list, images: list, verdict: Optional[str] = None) -> str:
    """The whole page (see the module docstring); `verdict` defaults to the one in the verdict line."""
    links = [(s.anchor, s.title) for s in secs] + ([("plots", "Plots")] if images else [])
    found = BANNER_RE.match(summary[0]) if summary else None
    shown = str(verdict) if verdict is not None else (found.group(1) if found else "")
    parts = [
        "<!doctype html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{esc(title)}{': ' + esc(shown) if shown else ''}</title>",
        f"<style>{STYLE}</style></head>",
        "<body>",
        banner(title, summary, verdict),
        "<nav id='nav' aria-label='sections'>"
        + "".join(f"<a href='#{esc(a)}'>{esc(t)}</a>" for a, t in links)
        + "</nav>",
        "<main>",
    ]
    for s in secs:
        parts.append(f"<section id='{esc(s.anchor)}'><h2>{esc(s.title)}</h2>")
        if s.rows:
            parts.append(table(s))
        parts += [f"<p class='note'>{esc(n)}</p>" for n in s.notes]
        parts.append("</section>")
    if images:
        parts.append(plots(images))
    parts += ["</main>", f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
