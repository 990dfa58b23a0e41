"""Self-contained HTML pages (conformance.html and the multi-host matrix.html): no network, no CDN.

Every value from a run is untrusted (a hostile sandbox chooses hostnames, mount paths, evidence):
it goes into the page through `esc` (html.escape, quotes included) or, for a script, through
`json_block`, whose JSON escapes <, > and & as \\u003c, \\u003e and \\u0026 so that nothing in it can
close the block. The Content-Security-Policy allows no network at all and only the page's own
inline script (by its hash): were an escape ever missed, an injected script still would not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable
from typing import Any

from nsconform.report.results import plain

# Fill colours of outcomes and verdicts (the tests look for these in a screenshot).
COLOURS = {
    "passed": "#2da44e",
    "failed": "#cf222e",
    "error": "#bf8700",
    "skipped": "#8c959f",
    "missing": "#8250df",
    "conformant": "#2da44e",
    "violated": "#cf222e",
    "untested": "#8c959f",
}
GLYPHS = {"passed": "", "failed": "\u00d7", "error": "!", "skipped": "\u2013", "missing": "?"}

CSS = """
body { font: 14px/1.45 "DejaVu Sans", system-ui, sans-serif; color: #1f2328; margin: 0; background: #fff; }
main { padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
h3 { font-size: 14px; margin: 14px 0 4px; }
.sub { color: #59636e; margin: 0 0 12px; }
code, pre, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
pre { background: #f6f8fa; border: 1px solid #d1d9e0; border-radius: 6px; padding: 8px; white-space: pre-wrap;
      word-break: break-all; margin: 4px 0; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0 4px; }
.chip { border-radius: 6px; padding: 6px 12px; color: #fff; min-width: 110px; }
.chip b { display: block; font-size: 15px; } .chip span { font-size: 12px; display: block; }
.chip .failing a { color: #fff; display: block; font-family: "DejaVu Sans Mono", monospace; }
.legend { display: flex; gap: 14px; align-items: center; color: #59636e; font-size: 12px; margin: 6px 0; }
.legend i { display: inline-block; width: 14px; height: 14px; border-radius: 3px; vertical-align: -3px;
            margin-right: 4px; color: #fff; font: bold 11px/14px "DejaVu Sans", sans-serif; text-align: center;
            font-style: normal; }
.scroll { overflow-x: auto; border: 1px solid #d1d9e0; border-radius: 6px; }
table { border-collapse: collapse; }
table.facts td, table.facts th, table.list td, table.list th { border-bottom: 1px solid #eaeef2; padding: 3px 10px;
      text-align: left; vertical-align: top; }
table.facts th { font-weight: normal; color: #59636e; white-space: nowrap; }
.m th.check { text-align: left; font-weight: normal; padding: 0 10px 0 8px; white-space: nowrap;
      position: sticky; left: 0; background: #fff; z-index: 1; }
.m th.axis { text-align: right; font-weight: normal; color: #59636e; font-size: 12px; padding: 0 10px 0 8px;
      position: sticky; left: 0; background: #fff; z-index: 1; }
.m tr.group th { text-align: left; background: #f6f8fa; padding: 6px 8px; position: sticky; left: 0; }
.m td.k { padding: 0; width: 13px; height: 14px; min-width: 13px; text-align: center; }
.m td.k span { display: block; width: 11px; height: 12px; margin: 1px; border-radius: 2px; color: #fff;
      font: bold 10px/12px "DejaVu Sans", sans-serif; cursor: pointer; }
.m th.c { padding: 2px 0; vertical-align: bottom; font: normal 10px/13px "DejaVu Sans Mono", monospace;
      color: #59636e; }
.m th.c span { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; }
.m tr:target th.check { background: #fff8c5; }
.m td.k span.na { background: #f6f8fa; cursor: default; }
.m td.k span.reg { box-shadow: 0 0 0 2px #1f2328; }
.m td.dot { text-align: center; padding: 0; height: 14px; }
.m td.dot span { display: inline-block; width: 7px; height: 7px; border-radius: 50%; border: 1px solid #8c959f; }
.m td.dot span.on { background: #1f2328; border-color: #1f2328; }
.m td.h { padding: 3px 8px; text-align: center; white-space: nowrap; color: #fff; border: 2px solid #fff;
      border-radius: 6px; font-size: 12px; }
.m td.h.none { color: #8c959f; background: #f6f8fa; }
.m th.host { font-weight: normal; font-size: 12px; padding: 6px 8px; vertical-align: bottom; text-align: center; }
.result { border-left: 4px solid; padding: 2px 0 2px 12px; margin: 12px 0; }
.result details { margin: 4px 0; } .result summary { cursor: pointer; }
.nowrap { white-space: nowrap; }
.m td.g, .m th.g { border-left: 4px solid #fff; }
#detail { position: fixed; right: 16px; bottom: 16px; width: 460px; max-height: 60vh; overflow: auto;
      background: #fff; border: 1px solid #d1d9e0; border-radius: 8px; padding: 10px 14px;
      box-shadow: 0 8px 24px rgba(0,0,0,.2); }
#detail button { float: right; } #detail td { word-break: break-all; }
"""


def esc(value: Any) -> str:
    """Any value as HTML text (also safe inside a quoted attribute); unprintables shown as escapes."""
    return html.escape(plain(value))


def multiline(value: Any) -> str:
    """Text whose line breaks are kept (for <pre>), every other unprintable escaped."""
    return "\n".join(esc(line) for line in str(value).split("\n"))


def colour_css() -> str:
    rules = [f".o-{name} {{ background: {colour}; }}" for name, colour in COLOURS.items()]
    rules += [f".result.o-{name} {{ background: none; border-color: {colour}; }}" for name, colour in COLOURS.items()]
    return "\n".join(rules)


def json_block(element_id: str, data: Any) -> str:
    """Data for the page's script: a JSON block nothing inside can break out of."""
    payload = json.dumps(data, ensure_ascii=True)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{payload}</script>'


def page(title: str, body: Iterable[str], script: str | None = None) -> str:
    """A whole page: `title` and `body` are HTML already escaped; `script` is the page's own code."""
    sources = "script-src 'none'"
    if script is not None:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        sources = f"script-src 'sha256-{digest}'"
    policy = f"default-src 'none'; style-src 'unsafe-inline'; {sources}; base-uri 'none'; form-action 'none'"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>",
        f"<style>{CSS}{colour_css()}</style>",
        "</head><body><main>",
        *body,
        "</main>",
    ]
    if script is not None:
        parts.append(f"<script>{script}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def chips(entries: Iterable[tuple[str, str, str, list[str]]]) -> str:
    """Coloured verdict boxes: (state, heading, detail, failing checks) each, all values untrusted; each
    failing check links to its row of the matrix (`#check-NAME`)."""
    boxes = []
    for state, heading, detail, failing in entries:
        links = "".join(f'<a href="#check-{esc(check)}">{esc(check)}</a>' for check in failing)
        named = f'<span class="failing">failing: {links}</span>' if links else ""
        boxes.append(f'<div class="chip o-{esc(state)}"><b>{esc(heading)}</b><span>{esc(detail)}</span>{named}</div>')
    return '<div class="chips">' + "".join(boxes) + "</div>"


def legend(states: Iterable[str], note: str = "") -> str:
    """A colour key for `states`, then a note (trusted text)."""
    items = [f'<span><i class="o-{s}">{GLYPHS.get(s, "")}</i>{s}</span>' for s in states]
    return '<div class="legend">' + "".join(items) + (f"<span>{esc(note)}</span>" if note else "") + "</div>"


def facts_table(rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f'<tr><th class="mono">{esc(k)}</th><td class="mono">{esc(v)}</td></tr>' for k, v in rows)
    return f'<table class="facts">{body}</table>'
