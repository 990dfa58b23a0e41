"""One compatibility matrix from many hosts' reports: `nsconform-merge OUT_DIR REPORT...`
(or `python -m nsconform.report.merge`).

A kernel or distro audit runs the same suite on N machines and reads one page. Each REPORT is a
conformance.json (or a directory holding one). Columns are the reports (host, kernel, distro,
runtime); rows are the checks, grouped by namespace under each host's namespace verdict. A cell
sums up the check's results on that host over every combination it ran: failed (how many) if any
failed, else error, else passed, else skipped; "not run" where the host did not run the check.
Rows where the hosts disagree are marked, and the host facts are laid side by side.

Writes OUT_DIR/matrix.html (self-contained) and OUT_DIR/matrix.md, and with --kcidb OUT_DIR/kcidb.json,
every report's results in KernelCI's KCIDB format (nsconform.report.kcidb); the exit status is 0 unless
an input is not a report or an option is wrong (2), whatever the verdicts.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsconform.areas import ALL as AREAS
from nsconform.namespaces import ALL, combo_id
from nsconform.report import kcidb
from nsconform.report.conformance import ReportError, load_report
from nsconform.report.hostfacts import fact_rows
from nsconform.report.markdown import code, icon, table, text
from nsconform.report.page import esc, legend, page
from nsconform.report.results import plain, runtime_label, subject
from nsconform.report.writing import ReportDirError, ReportWriteError, check_writable, write_set

NOT_RUN = "none"
STATES = ("failed", "error", "passed", "skipped")  # a cell takes the first state any result has
FILES = ("matrix.html", "matrix.md")


@dataclass(frozen=True)
class Host:
    label: str
    source: str
    doc: dict[str, Any]

    @property
    def facts(self) -> dict[str, Any]:
        return self.doc["host"]


@dataclass(frozen=True)
class Cell:
    state: str  # failed, error, passed, skipped, or none (not run)
    text: str
    detail: str  # which combinations failed or errored, and the first reason


def hosts(sources: list[tuple[str, dict[str, Any]]]) -> list[Host]:
    """One column per report, labelled by hostname; a repeated hostname gets #2, #3 ..."""
    seen: dict[str, int] = {}
    columns = []
    for source, doc in sources:
        name = str(doc["host"].get("hostname", "?"))
        seen[name] = seen.get(name, 0) + 1
        columns.append(Host(name if seen[name] == 1 else f"{name} #{seen[name]}", source, doc))
    return columns


def cell(results: list[dict[str, Any]]) -> Cell:
    if not results:
        return Cell(NOT_RUN, "not run", "")
    counts = {o: sum(r["outcome"] == o for r in results) for o in STATES}
    state = next(o for o in STATES if counts[o])
    detail = []
    for o in ("failed", "error"):
        combos = [combo_id(r["combination"]) for r in results if r["outcome"] == o]
        if combos:
            detail.append(f"{o} on {', '.join(combos)}")
    first = next((r for r in results if r["outcome"] == state and r.get("reason")), None)
    if first:
        detail.append(plain(first["reason"], 300))
    shown = counts[state] if state in ("failed", "error") else counts["passed"] or counts["skipped"]
    return Cell(state, f"{shown}/{len(results)} {state}", "\n".join(detail))


def grid(columns: list[Host]) -> dict[str, dict[str, list[Cell]]]:
    """namespace (or area) -> check -> one Cell per host, namespaces in the kernel's order, then the areas."""
    found: dict[str, set[str]] = {}
    per_host: list[dict[str, list[dict[str, Any]]]] = []
    for host in columns:
        by_check: dict[str, list[dict[str, Any]]] = {}
        for r in host.doc["results"]:
            found.setdefault(subject(r), set()).add(r["check"])
            by_check.setdefault(r["check"], []).append(r)
        per_host.append(by_check)
    order = [name for name in (*ALL, *AREAS) if name in found] + sorted(set(found) - set(ALL) - set(AREAS))
    return {ns: {check: [cell(h.get(check, [])) for h in per_host] for check in sorted(found[ns])} for ns in order}


def differs(cells: list[Cell]) -> bool:
    return len({c.state for c in cells}) > 1


def verdicts(columns: list[Host], ns: str) -> list[str]:
    return [str(h.doc["summary"].get(ns, {}).get("verdict", NOT_RUN)) for h in columns]


def compared_facts(columns: list[Host]) -> list[tuple[str, list[str]]]:
    """Every host fact, one value per host ("" where a host lacks it)."""
    values = [dict(fact_rows({"runtime": h.doc["runtime"]}) + fact_rows(h.facts)) for h in columns]
    keys = list(dict.fromkeys(k for v in values for k in v))
    return [(k, [v.get(k, "") for v in values]) for k in keys]


# -- Markdown ---------------------------------------------------------------------------------


def render_markdown(columns: list[Host]) -> str:
    cells = grid(columns)
    head = ["check", *(text(h.label) for h in columns)]
    rows = []
    for ns, checks in cells.items():
        rows.append([f"**{text(ns)}**", *(f"{icon(v)} {v}" for v in verdicts(columns, ns))])
        for check, row in checks.items():
            mark = " ≠" if differs(row) else ""
            rows.append([code(check) + mark, *(f"{icon(c.state)} {c.text}".strip() for c in row)])
    disagreements = [
        f"- {code(check)}: " + "; ".join(f"{text(h.label)} {c.state}" for h, c in zip(columns, row, strict=True))
        for checks in cells.values()
        for check, row in checks.items()
        if differs(row)
    ]
    hosts_table = table(
        ["host", "kernel", "distro", "runtime", "report"],
        [
            [
                text(h.label),
                text(h.facts.get("kernel")),
                text(h.facts.get("distro")),
                text(runtime_label(h.doc["runtime"])),
                code(h.source),
            ]
            for h in columns
        ],
    )
    facts = [[code(k), *(text(v, 120) for v in vs)] for k, vs in compared_facts(columns) if len(set(vs)) > 1]
    parts = [
        f"# nsconform compatibility matrix: {len(columns)} hosts",
        hosts_table,
        "A cell counts the check's results on that host over every combination it ran; ≠ marks a check whose "
        "outcome differs between hosts.",
        table(head, rows),
        f"## Where the hosts differ ({len(disagreements)} checks)",
        "\n".join(disagreements) or "Every check has the same outcome on every host.",
    ]
    if facts:
        parts += ["## Host facts that differ", table(["fact", *(text(h.label) for h in columns)], facts)]
    return "\n\n".join(parts) + "\n"


# -- HTML -------------------------------------------------------------------------------------


def render_html(columns: list[Host]) -> str:
    cells = grid(columns)
    header = "".join(
        f'<th class="host"><b>{esc(h.label)}</b><br>{esc(h.facts.get("kernel"))}<br>{esc(h.facts.get("distro"))}'
        f'<br><span class="mono">{esc(runtime_label(h.doc["runtime"]))}</span></th>'
        for h in columns
    )
    rows = [f"<tr><th></th>{header}</tr>"]
    for ns, checks in cells.items():
        chips = "".join(f'<td class="h o-{esc(v)}">{esc(ns)}: {esc(v)}</td>' for v in verdicts(columns, ns))
        rows.append(f'<tr class="group"><th>{esc(ns)}</th>{chips}</tr>')
        for check, row in checks.items():
            mark = ' <b title="the hosts differ">&ne;</b>' if differs(row) else ""
            tds = "".join(
                f'<td class="h {"none" if c.state == NOT_RUN else "o-" + esc(c.state)}" '
                f'title="{"&#10;".join(esc(line) for line in c.detail.split(chr(10)))}">{esc(c.text)}</td>'
                for c in row
            )
            rows.append(f'<tr><th class="check mono">{esc(check)}{mark}</th>{tds}</tr>')
    facts = "".join(
        f'<tr><th class="mono">{esc(k)}{" &ne;" if len(set(vs)) > 1 else ""}</th>'
        + "".join(f'<td class="mono">{esc(v)}</td>' for v in vs)
        + "</tr>"
        for k, vs in compared_facts(columns)
    )
    sources = "".join(f"<li>{esc(h.label)}: <code>{esc(h.source)}</code></li>" for h in columns)
    body = [
        f"<h1>nsconform compatibility matrix: {len(columns)} hosts</h1>",
        '<p class="sub">A cell counts the check\'s results on that host over every combination it ran; hover it '
        "for the failing combinations and the first reason. &ne; marks a check whose outcome differs between "
        "hosts.</p>",
        legend(["passed", "failed", "error", "skipped"]),
        f'<div class="scroll"><table class="m">{"".join(rows)}</table></div>',
        "<h2>Host facts</h2>",
        f'<div class="scroll"><table class="facts"><tr><th></th>'
        f"{''.join(f'<th>{esc(h.label)}</th>' for h in columns)}</tr>{facts}</table></div>",
        f"<h2>Reports</h2><ul>{sources}</ul>",
    ]
    return page(f"nsconform compatibility matrix: {len(columns)} hosts", body)


# -- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nsconform-merge",
        description="Merge nsconform reports from many hosts into one compatibility matrix "
        "(OUT_DIR/matrix.html and OUT_DIR/matrix.md).",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("reports", type=Path, nargs="+", metavar="REPORT", help="conformance.json, or its directory")
    parser.add_argument("--kcidb", action="store_true", help="also write OUT_DIR/kcidb.json (KCIDB v5.3)")
    parser.add_argument("--kcidb-origin", metavar="NAME", help="the origin in kcidb.json's ids (default: nsconform)")
    parser.add_argument("--kcidb-commit", metavar="HASH", help="git_commit_hash of the kernels not packaged by Debian")
    args = parser.parse_args(argv)
    if not args.kcidb and (args.kcidb_origin or args.kcidb_commit):
        parser.error("--kcidb-origin and --kcidb-commit are for kcidb.json: add --kcidb")
    try:
        opts = kcidb.options(args.kcidb_origin, args.kcidb_commit) if args.kcidb else None
        check_writable(args.out_dir, "OUT_DIR")
        paths = [p / "conformance.json" if p.is_dir() else p for p in args.reports]
        columns = hosts([(str(p), load_report(p)) for p in paths])
    except (ReportError, ReportDirError, kcidb.KcidbError) as e:
        parser.error(str(e))
    texts: dict[str, str | None] = {"matrix.html": render_html(columns), "matrix.md": render_markdown(columns)}
    texts[kcidb.FILE] = None if opts is None else kcidb.render([h.doc for h in columns], opts)  # None: an old one goes
    try:
        written = write_set(args.out_dir, texts)
    except ReportWriteError as e:
        parser.exit(4, f"nsconform-merge: {e}\n")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
