"""Markdown that stays what it says, whatever a probe put in its text (for summary.md and matrix.md).

Text from a run (hostnames, reasons, evidence) may be hostile. `text` escapes it for inline use
(HTML-significant characters as entities, Markdown punctuation with backslashes, all on one line);
`code` and `block` put it in code spans and fenced blocks whose fences are longer than any
backtick run inside.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

from nsconform.report.results import plain

ICONS = {
    "passed": "✅",
    "conformant": "✅",
    "failed": "❌",
    "violated": "❌",
    "error": "⚠️",
    "skipped": "⏭️",
    "untested": "⚪",
    "missing": "❔",
}
SPECIAL = set("\\`*_[]|~$")
BACKTICKS = re.compile(r"`+")


def text(value: Any, limit: int = 300) -> str:
    """Inline Markdown showing `value` literally, on one line, at most about `limit` characters."""
    out = []
    for c in plain(value, limit):
        if c in "&<>":
            out.append(html.escape(c, quote=False))
        elif c in SPECIAL:
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def fence(content: str, minimum: int) -> str:
    longest = max((len(run) for run in BACKTICKS.findall(content)), default=0)
    return "`" * max(minimum, longest + 1)


def code(value: Any, limit: int = 200) -> str:
    """An inline code span of `value` (one line; `|` escaped, so that it also fits in a table cell)."""
    content = plain(value, limit).replace("|", "\\|")
    ticks = fence(content, 1)
    pad = " " if content.startswith("`") or content.endswith("`") else ""
    return f"{ticks}{pad}{content}{pad}{ticks}"


def block(lines: Iterable[str], limit: int = 2000) -> str:
    """A fenced code block of `lines` (unprintables escaped), cut after `limit` characters."""
    content = "\n".join(plain(line) for text in lines for line in str(text).split("\n"))
    if len(content) > limit:
        content = content[:limit] + f"\n... ({len(content) - limit} more characters)"
    ticks = fence(content, 3)
    return f"{ticks}text\n{content}\n{ticks}"


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A GitHub table; cells must already be Markdown (text(), code() or trusted)."""
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def collapsed(summary: str, content: str) -> str:
    """A <details> block: `summary` is escaped here (it is HTML, not Markdown), `content` is Markdown."""
    return f"<details><summary>{html.escape(plain(summary, 200))}</summary>\n\n{content}\n\n</details>"


def icon(outcome_or_verdict: str) -> str:
    return ICONS.get(outcome_or_verdict, "")
