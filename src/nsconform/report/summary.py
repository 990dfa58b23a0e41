"""summary.md: the verdict for a CI job summary (GitHub's limit is 1 MiB; this stays far below).

Verdict per namespace, regressions and improvements against a baseline, each failure and error
with its reason and evidence (at most MAX_LISTED, then a count), skipped results grouped by
reason, and the host facts. Every value from a run goes through reports.markdown's escaping.
"""

from __future__ import annotations

from typing import Any

from nsconform.areas import ALL as AREAS
from nsconform.namespaces import combo_id
from nsconform.report.hostfacts import fact_rows
from nsconform.report.markdown import block, code, collapsed, icon, table, text
from nsconform.report.results import (
    OUTCOMES,
    basis_text,
    by_check,
    evidence_lines,
    hardening_text,
    label,
    overall,
    problem_tally,
    problems,
    runtime_label,
    skipped_by_reason,
)

MAX_LISTED = 50  # failures and errors shown with their evidence
MAX_COMBOS = 64  # combinations named per failing check
MAX_CHANGES = 200
MAX_SKIP_GROUPS = 30


def render(doc: dict[str, Any]) -> str:
    results = doc["results"]
    verdict = overall(doc["summary"])
    host = doc["host"]
    runtime = runtime_label(doc["runtime"])
    parts = [
        f"# {icon(verdict)} nsconform: {text(runtime)} on {text(host.get('hostname'))}: {verdict}",
        f"Kernel {text(host.get('kernel'))} ({text(host.get('machine'))}), {text(host.get('distro'))}; "
        f"started {text(doc.get('started'))}, {doc.get('duration_s', 0):.1f} s; {len(results)} results.",
        namespaces(doc["summary"]),
    ]
    if "baseline" in doc:
        parts += changes(doc["baseline"])
    parts += failures(results, doc.get("checks", {}))
    parts += skipped(results)
    parts += hardening(doc["runtime"])
    parts.append(host_facts(host))
    return "\n\n".join(parts) + "\n"


def namespaces(summary: dict[str, dict[str, Any]]) -> str:
    rows = [
        [
            code(ns),
            f"{icon(entry['verdict'])} {entry['verdict']}",
            text(basis_text(entry)),
            *(str(entry.get(o, 0)) for o in OUTCOMES),
        ]
        for ns, entry in summary.items()
    ]
    first = "namespace or area" if set(summary) & set(AREAS) else "namespace"
    return table([first, "verdict", "rests on", *OUTCOMES], rows)


def hardening(runtime: dict[str, Any]) -> list[str]:
    """What confined the probe beyond its namespaces, per observation: information, not a verdict."""
    seen = runtime.get("hardening") or []
    if not seen:
        return []
    rows = [[text(hardening_text(h), 300), text(", ".join(h.get("combinations", [])), 300)] for h in seen]
    return [
        "## Hardening (information, not a verdict)",
        table(["what confined the probe", "in the sandboxes of"], rows),
    ]


def changes(baseline: dict[str, Any]) -> list[str]:
    regressions, improvements = baseline["regressions"], baseline["improvements"]
    parts = [f"## {icon('failed') if regressions else icon('passed')} Baseline: {len(regressions)} regressions"]
    if regressions:
        parts.append(
            f"Each of these passed in the baseline {code(baseline['file'])} and does not now: the session fails."
        )
        parts.append(change_table(regressions))
    else:
        parts.append(f"Every result that passed in the baseline {code(baseline['file'])} passes.")
    if improvements:
        parts += [f"### Improvements ({len(improvements)})", change_table(improvements)]
    if baseline.get("now_skipped"):
        parts.append(
            f"{baseline['now_skipped']} results that passed in the baseline are skipped now (a check that finds "
            "nothing to examine is skipped): no regression."
        )
    return parts


def change_table(changed: list[dict[str, Any]]) -> str:
    rows = [
        [code(label(c)), f"{icon(c['was'])} {c['was']}", f"{icon(c['now'])} {c['now']}", text(c["reason"], 200)]
        for c in changed[:MAX_CHANGES]
    ]
    more = (
        f"\n\n... and {len(changed) - MAX_CHANGES} more (conformance.json lists all)."
        if len(changed) > MAX_CHANGES
        else ""
    )
    return table(["check", "baseline", "now", "reason"], rows) + more


def failures(results: list[dict[str, Any]], guarantees: dict[str, str]) -> list[str]:
    """Failures and errors by check: its combinations, then each result's reason and evidence (collapsed)."""
    bad = problems(results)
    if not bad:
        return []
    parts = [f"## Failures and errors ({len(bad)})"]
    shown = 0
    for check, group in sorted(by_check(bad).items()):
        outcomes = problem_tally(group)
        combos = [code(combo_id(r["combination"])) for r in group]
        parts += [
            f"### {icon(group[0]['outcome'])} {code(check)}: {outcomes}",
            text(guarantees.get(check, ""), 300),
            "On "
            + ", ".join(combos[:MAX_COMBOS])
            + (f" and {len(combos) - MAX_COMBOS} more" if len(combos) > MAX_COMBOS else ""),
        ]
        for r in group[: max(0, MAX_LISTED - shown)]:
            heading = f"[{combo_id(r['combination'])}] {r['outcome']} (expected {r['expected']})"
            parts.append(collapsed(heading, block([r.get("reason", ""), "", *evidence_lines(r.get("evidence", {}))])))
            shown += 1
    if len(bad) > shown:
        parts.append(f"The evidence of {len(bad) - shown} more failures and errors is in conformance.html.")
    return parts


def skipped(results: list[dict[str, Any]]) -> list[str]:
    groups = skipped_by_reason(results)
    if not groups:
        return []
    rows = [
        [
            text(reason, 300),
            str(len(labels)),
            ", ".join(code(x) for x in labels[:5]) + (", ..." if len(labels) > 5 else ""),
        ]
        for reason, labels in groups[:MAX_SKIP_GROUPS]
    ]
    total = sum(len(labels) for _, labels in groups)
    return [f"## {icon('skipped')} Skipped ({total})", table(["reason", "results", "for example"], rows)]


def host_facts(host: dict[str, Any]) -> str:
    rows = [[code(key), text(value, 300)] for key, value in fact_rows(host)]
    return "<details><summary>Host facts</summary>\n\n" + table(["fact", "value"], rows) + "\n\n</details>"
