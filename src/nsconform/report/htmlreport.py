"""conformance.html: the namespace x check matrix a person reads at a glance, in one self-contained page.

Rows are the checks, grouped by namespace under their verdict; columns are the combinations, each
labelled by an abbreviation of the namespaces it isolates (its full name on hover; the dots above show
the same); each cell is one result, coloured by outcome. The verdict boxes name their failing checks,
linked to their rows; the matrix fits a 1280-pixel window for the six default namespaces.
Hovering a cell shows its reason; clicking it shows its evidence (the page's only script reads the
results from a JSON block). Below: regressions against a baseline, every failure and error with
its evidence (readable without the script), skipped results by reason, the runtime and host facts.
"""

from __future__ import annotations

from typing import Any

from nsconform.areas import ALL as AREAS
from nsconform.namespaces import ALL, NONE, combo_id
from nsconform.report.hostfacts import fact_rows
from nsconform.report.page import GLYPHS, chips, esc, facts_table, json_block, legend, multiline, page
from nsconform.report.results import (
    basis_text,
    by_check,
    evidence_lines,
    hardening_text,
    label,
    overall,
    plain,
    plural,
    problem_tally,
    problems,
    runtime_label,
    skipped_by_reason,
    subject,
    tally,
)

MAX_DETAILED = 500
# A column's label: one letter per namespace it isolates (user upper case, apart from uts).
ABBREVIATIONS = {"uts": "u", "pid": "p", "mnt": "m", "ipc": "i", "net": "n", "user": "U", "cgroup": "c", "time": "t"}
SHIPPED = "shipped"  # the column of the hardening areas' results: the runtime's as-shipped sandbox
TITLE_EVIDENCE = 6

SCRIPT = r""""use strict";
const results = JSON.parse(document.getElementById("nsconform-results").textContent);
const panel = document.getElementById("detail");
function show(i) {
  const r = results[i];
  const where = r.area ? "shipped" : r.combination === null ? "n/a" : r.combination.join("+") || "none";
  document.getElementById("d-title").textContent = r.check + " [" + where + "]";
  document.getElementById("d-meta").textContent = r.outcome + " (expected " + r.expected + "): " + r.id;
  const reason = document.getElementById("d-reason");
  reason.textContent = r.reason;
  reason.hidden = !r.reason;
  const table = document.getElementById("d-evidence");
  table.replaceChildren();
  for (const [key, value] of Object.entries(r.evidence || {})) {
    const row = table.insertRow();
    const th = document.createElement("th");
    th.textContent = key;
    row.appendChild(th);
    row.insertCell().textContent = JSON.stringify(value);
  }
  panel.hidden = false;
  history.replaceState(null, "", "#result=" + i);
}
document.querySelector("table.m").addEventListener("click", (event) => {
  const cell = event.target.closest("[data-i]");
  if (cell) show(Number(cell.dataset.i));
});
document.getElementById("d-close").addEventListener("click", () => { panel.hidden = true; });
const linked = /^#result=(\d+)$/.exec(location.hash);
if (linked && Number(linked[1]) < results.length) show(Number(linked[1]));
"""

DETAIL_PANEL = """<aside id="detail" hidden><button type="button" id="d-close">close</button>
<h3 id="d-title"></h3><p id="d-meta" class="sub mono"></p><pre id="d-reason"></pre>
<table class="facts mono" id="d-evidence"></table></aside>"""


def render(doc: dict[str, Any]) -> str:
    results = doc["results"]
    host, summary = doc["host"], doc["summary"]
    verdict = overall(summary)
    runtime = runtime_label(doc["runtime"])
    counts = {o: sum(1 for r in results if r["outcome"] == o) for o in GLYPHS}
    failing = failing_checks(results)
    body = [
        f"<h1>nsconform: {esc(doc['runtime'].get('name', '?'))} on {esc(host.get('hostname'))}</h1>",
        f'<p class="sub">runtime: {esc(runtime)}</p>',
        f'<p class="sub">kernel {esc(host.get("kernel"))} ({esc(host.get("machine"))}), '
        f"{esc(host.get('distro'))} &middot; started {esc(doc.get('started'))} &middot; "
        f"{float(doc.get('duration_s', 0)):.1f} s &middot; {len(results)} results: "
        + ", ".join(tally(n, o) for o, n in counts.items() if n)
        + "</p>",
        chips(
            [(verdict, f"overall: {verdict}", overall_detail(summary), [])]
            + [
                (entry["verdict"], f"{ns}: {entry['verdict']}", with_basis(entry), failing.get(ns, []))
                for ns, entry in summary.items()
            ]
        ),
    ]
    body += [
        "<h2>Matrix</h2>",
        legend(
            ["passed", "failed", "error", "skipped"],
            "hover a cell for its reason, click it for its evidence; a dark ring marks a regression; a column's "
            f"label names the namespaces its sandbox isolates ({key_text(axis(doc))}; hover it for the full "
            "name), as do the dots above it",
        ),
        matrix(doc),
    ]
    if "baseline" in doc:
        body += baseline_section(doc["baseline"])
    body += failure_section(results, doc.get("checks", {}))
    body += skipped_section(results)
    body += hardening_section(doc["runtime"].get("hardening") or [])
    runtime_facts = {k: v for k, v in doc["runtime"].items() if k != "hardening"}
    body += [
        "<h2>Runtime and host</h2>",
        facts_table([*fact_rows({"runtime": runtime_facts}), *fact_rows(host)]),
        DETAIL_PANEL,
        json_block("nsconform-results", results),
    ]
    title = f"nsconform {verdict}: {esc(runtime)} on {esc(host.get('hostname'))}"
    return page(title, body, SCRIPT)


def failing_checks(results: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The checks of each namespace with a failed or errored result."""
    found: dict[str, set[str]] = {}
    for r in problems(results):
        found.setdefault(r["namespace"], set()).add(r["check"])
    return {ns: sorted(checks) for ns, checks in found.items()}


def overall_detail(summary: dict[str, Any]) -> str:
    """The overall box's line: how many namespaces have each verdict."""
    verdicts: dict[str, int] = {}
    for entry in summary.values():
        verdicts[entry["verdict"]] = verdicts.get(entry["verdict"], 0) + 1
    return ", ".join(f"{n} {verdict}" for verdict, n in verdicts.items()) or "no namespace"


def row_id(check: str) -> str:
    """The anchor of a check's row in the matrix."""
    return "check-" + check


def abbreviation(combination: tuple[str, ...], names: list[str]) -> str:
    """A combination's column label: one letter per namespace it isolates, in the axis's order; `none`."""
    letters = [ABBREVIATIONS.get(ns, ns) for ns in names if ns in combination]
    return "".join(letters) or NONE


def key_text(names: list[str]) -> str:
    return ", ".join(f"{ABBREVIATIONS.get(ns, ns)} {ns}" for ns in names)


def with_basis(entry: dict[str, Any]) -> str:
    """A namespace's counts and what its verdict rests on: '12 passed, 1 skipped; rests on identity only'."""
    found = basis_text(entry)
    return counts_text(entry) + (f"; rests on {found}" if found else "")


def hardening_section(seen: list[dict[str, Any]]) -> list[str]:
    """What confined the probe beyond its namespaces: information, not a verdict."""
    if not seen:
        return []
    rows = "".join(
        f'<tr><td class="mono">{esc(hardening_text(h))}</td>'
        f'<td class="mono">{esc(", ".join(h.get("combinations", [])))}</td></tr>'
        for h in seen
    )
    return [
        "<h2>Hardening (information, not a verdict)</h2>",
        f'<table class="list"><tr><th>what confined the probe</th><th>in the sandboxes of</th></tr>{rows}</table>',
    ]


def counts_text(entry: dict[str, Any]) -> str:
    return (
        ", ".join(tally(entry[o], o) for o in ("passed", "failed", "error", "skipped") if entry.get(o)) or "no results"
    )


def axis(doc: dict[str, Any]) -> list[str]:
    """The namespaces the columns vary over, in the kernel's order (the hardening areas are rows, not axes)."""
    names = (set(doc["summary"]) - set(AREAS)) | {
        ns for r in doc["results"] if not r.get("area") for ns in r["combination"] or ()
    }
    return [ns for ns in ALL if ns in names] + sorted(names - set(ALL))


def column(r: dict[str, Any]) -> str:
    """A result's column: its combination, or `shipped` for a hardening area's (the runtime's as-shipped sandbox)."""
    return SHIPPED if r.get("area") else combo_id(r["combination"])


def matrix(doc: dict[str, Any]) -> str:
    results = doc["results"]
    applied = [r["combination"] for r in results if r["combination"] is not None and not r.get("area")]  # n/a: none
    combos = sorted({tuple(sorted(c)) for c in applied}, key=lambda c: (len(c), c))
    shipped = next((tuple(sorted(r["combination"])) for r in results if r.get("area")), None)
    names = axis(doc)
    # columns are grouped by how many namespaces they isolate; a gap starts each group, and the as-shipped column
    ids = [combo_id(c) for c in combos]
    gap = ["g" if i and len(c) != len(combos[i - 1]) else "" for i, c in enumerate(combos)]
    if shipped is not None:
        combos, ids, gap = [*combos, shipped], [*ids, SHIPPED], [*gap, "g"]
    cell = {(r["check"], column(r)): i for i, r in enumerate(results)}
    regressed = {label(c) for c in doc.get("baseline", {}).get("regressions", [])}
    guarantees = doc.get("checks", {})
    labels = "".join(
        f'<th class="c {g}" title="{esc(combo_id(c))}"><span>{esc(abbreviation(c, names))}</span></th>'
        if key != SHIPPED
        else f'<th class="c {g}" title="{esc("as shipped: " + combo_id(c))}"><span>{SHIPPED}</span></th>'
        for c, key, g in zip(combos, ids, gap, strict=True)
    )
    rows = [f'<tr><th class="axis">isolates</th>{labels}</tr>']
    for ns in names:
        dots = "".join(
            f'<td class="dot {g}" title="{esc(combo_id(c) if key != SHIPPED else "as shipped: " + combo_id(c))}">'
            f'<span class="{"on" if ns in c else "off"}"></span></td>'
            for c, key, g in zip(combos, ids, gap, strict=True)
        )
        rows.append(f'<tr><th class="axis">{esc(ns)} isolated</th>{dots}</tr>')
    for ns, checks in namespaces_and_checks(doc).items():
        entry = doc["summary"].get(ns, {})
        rows.append(
            f'<tr class="group"><th colspan="{len(combos) + 1}">{esc(ns)} '
            f'<span class="sub">{esc(entry.get("verdict", ""))}: {esc(counts_text(entry))}</span></th></tr>'
        )
        for check in checks:
            cells = []
            for key, g in zip(ids, gap, strict=True):
                i = cell.get((check, key))
                if i is None:
                    cells.append(f'<td class="k {g}"><span class="na" title="does not apply"></span></td>')
                    continue
                r = results[i]
                ring = " reg" if label(r) in regressed else ""
                cells.append(
                    f'<td class="k {g}"><span class="o-{esc(r["outcome"])}{ring}" data-i="{i}" '
                    f'title="{cell_title(r)}">{GLYPHS.get(r["outcome"], "?")}</span></td>'
                )
            head = f'<th class="check mono" title="{esc(guarantees.get(check, ""))}">{esc(check)}</th>'
            rows.append(f'<tr id="{esc(row_id(check))}">{head}{"".join(cells)}</tr>')
    return '<div class="scroll"><table class="m">' + "\n".join(rows) + "</table></div>"


def namespaces_and_checks(doc: dict[str, Any]) -> dict[str, list[str]]:
    """The checks of each namespace (and hardening area) with results, in the summary's order."""
    found: dict[str, set[str]] = {}
    for r in doc["results"]:
        found.setdefault(subject(r), set()).add(r["check"])
    order = [*doc["summary"], *sorted(set(found) - set(doc["summary"]))]
    return {ns: sorted(found[ns]) for ns in order if ns in found}


def cell_title(r: dict[str, Any]) -> str:
    """A cell's tooltip: check, combination, outcome, reason and the first evidence lines (escaped)."""
    lines = [f"{label(r)}: {r['outcome']} (expected {r['expected']})"]
    if r.get("reason"):
        lines.append(plain(r["reason"], 300))
    lines += evidence_lines(r.get("evidence", {}))[:TITLE_EVIDENCE]
    return "&#10;".join(esc(line) for line in lines)


def baseline_section(baseline: dict[str, Any]) -> list[str]:
    """Regressions and improvements, one row per check and change, naming every combination."""
    regressions, improvements = baseline["regressions"], baseline["improvements"]
    parts = [
        f"<h2>Against the baseline: {plural(len(regressions), 'regression')}, "
        f"{plural(len(improvements), 'improvement')}</h2>",
        f'<p class="sub">baseline <code>{esc(baseline["file"])}</code>; a regression passed there and now fails, '
        f"errors or is missing; {baseline.get('now_skipped', 0)} passed there and are skipped now (nothing to "
        "examine): no regression</p>",
    ]
    for title, changed in (("Regressions", regressions), ("Improvements", improvements)):
        rows = []
        for check, changes in by_check(changed).items():
            for (was, now), group in by_change(changes).items():
                combos = ", ".join(combo_id(c["combination"]) for c in group)
                rows.append(
                    f'<tr><td class="mono">{esc(check)}</td><td class="nowrap">{esc(was)} &rarr; '
                    f'<i class="o-{esc(now)}">&nbsp;&nbsp;</i> {esc(now)}</td><td class="mono">{esc(combos)}</td>'
                    f"<td>{esc(group[0]['reason'])}</td></tr>"
                )
        if rows:
            parts.append(
                f'<h3>{title}</h3><table class="list"><tr><th>check</th><th>outcome</th><th>combinations</th>'
                f"<th>reason (first)</th></tr>{''.join(rows)}</table>"
            )
    return parts


def by_change(changes: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in changes:
        groups.setdefault((c["was"], c["now"]), []).append(c)
    return groups


def failure_section(results: list[dict[str, Any]], guarantees: dict[str, str]) -> list[str]:
    """Every failure and error, grouped by check, each with its reason and evidence (no script needed)."""
    bad = problems(results)
    if not bad:
        return []
    parts = [f"<h2>Failures and errors ({len(bad)})</h2>"]
    shown = 0
    for check, group in sorted(by_check(bad).items()):
        outcomes = problem_tally(group)
        parts.append(
            f'<div class="result o-{esc(group[0]["outcome"])}"><h3><span class="mono">{esc(check)}</span>: '
            f'{esc(outcomes)}</h3><p class="sub">{esc(guarantees.get(check, ""))}</p>'
        )
        for r in group[: max(0, MAX_DETAILED - shown)]:
            evidence = "\n".join(evidence_lines(r.get("evidence", {})))
            parts.append(
                f'<details{" open" if r is group[0] else ""}><summary><span class="mono">'
                f"[{esc(column(r))}]</span> {esc(r['outcome'])} (expected {esc(r['expected'])})"
                f"</summary><pre>{multiline(r.get('reason', ''))}</pre>"
                + (f"<pre>{multiline(evidence)}</pre>" if evidence else "")
                + f'<p class="sub mono">{esc(r.get("id", ""))}</p></details>'
            )
            shown += 1
        parts.append("</div>")
    if len(bad) > shown:
        parts.append(f"<p>... and {len(bad) - shown} more: click their cells, or see conformance.json.</p>")
    return parts


def skipped_section(results: list[dict[str, Any]]) -> list[str]:
    groups = skipped_by_reason(results)
    if not groups:
        return []
    rows = "".join(
        f'<tr><td>{esc(reason)}</td><td>{len(labels)}</td><td class="mono">{esc(", ".join(labels[:8]))}'
        f"{', ...' if len(labels) > 8 else ''}</td></tr>"
        for reason, labels in groups
    )
    total = sum(len(labels) for _, labels in groups)
    return [
        f"<h2>Skipped ({total})</h2>",
        f'<table class="list"><tr><th>reason</th><th>results</th><th>checks</th></tr>{rows}</table>',
    ]
