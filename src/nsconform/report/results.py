"""Results of a run: one per check and combination, merged from the phases pytest reports."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from nsconform.namespaces import combo_id

OUTCOMES = ("passed", "failed", "skipped", "error")


@dataclass
class Result:
    id: str
    check: str
    namespace: str | None  # None for a result of a hardening area
    combination: list[str] | None  # None: the check applies to no combination of the run ([n/a])
    expected: str
    outcome: str
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0  # the check's call phase, in seconds
    area: str | None = None  # the hardening area (nsconform.areas) a result belongs to; None for a namespace's
    rests_on: str | None = None  # an area result's basis: "behaviour" or "facts"

    @property
    def subject(self) -> str:
        """What the result is summarized under: its namespace, or its area."""
        return self.area or self.namespace or ""

    def to_json(self) -> dict[str, Any]:
        """The result as the report holds it; a namespace's carries no area keys (its shape is unchanged)."""
        found = asdict(self)
        if self.area is None:
            del found["area"], found["rests_on"]
        return found


def subject(result: dict[str, Any]) -> str:
    """A reported result's namespace, or its area (an older report's results all name a namespace)."""
    return str(result.get("area") or result.get("namespace") or result["check"].split(".", 1)[0])


def label(result: dict[str, Any]) -> str:
    """A result's short, stable name: its check and combination, e.g. `uts.hostname_private[pid+uts]`; an area's
    result runs in the as-shipped sandbox: `caps.sets_as_declared[shipped]`."""
    if result.get("area"):
        return f"{result['check']}[shipped]"
    return f"{result['check']}[{combo_id(result['combination'])}]"


def order(result: Result) -> tuple[bool, str, str, int, list[str]]:
    """Results by namespace (the hardening areas after every namespace), check, then combination (smallest
    first; n/a first)."""
    return (
        result.area is not None,
        result.subject,
        result.check,
        len(result.combination or ()),
        result.combination or [],
    )


def plain(text: Any, limit: int = 0) -> str:
    """`text` on one line with every unprintable character escaped (for a terminal, a title, a table)."""
    value = str(text)
    if limit and len(value) > limit:
        value = value[:limit] + "..."
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in value)


def evidence_lines(evidence: dict[str, Any]) -> list[str]:
    """One `key: value` line per piece of evidence, values as JSON (what the probe and host saw)."""
    return [f"{plain(key)}: {plain(json.dumps(value, ensure_ascii=False))}" for key, value in evidence.items()]


class ResultBook:
    """Collects the phase records of each test (from this process or from xdist workers)."""

    def __init__(self) -> None:
        self._results: dict[str, Result] = {}
        self.guarantees: dict[str, str] = {}  # check name -> the guarantee its docstring states
        self._hardening: dict[str, set[str]] = {}  # what confines the probe (as JSON) -> the combinations seen in

    def add(self, record: dict[str, Any]) -> None:
        """Merge one phase's record: the first non-passing phase gives the outcome and reason."""
        if record.get("guarantee"):
            self.guarantees.setdefault(record["check"], record["guarantee"])
        if isinstance(record.get("hardening"), dict):
            seen = json.dumps(record["hardening"], sort_keys=True)
            self._hardening.setdefault(seen, set()).add(combo_id(record["combination"]))
        current = self._results.get(record["id"])
        if current is None:
            self._results[record["id"]] = Result(**{k: record[k] for k in Result.__dataclass_fields__ if k in record})
            return
        current.evidence.update(record.get("evidence", {}))
        if current.outcome == "passed" and record["outcome"] != "passed":
            current.outcome = "error" if record["phase"] == "teardown" else record["outcome"]
            current.reason = record["reason"]

    def results(self) -> list[Result]:
        return sorted(self._results.values(), key=order)

    def hardening(self) -> list[dict[str, Any]]:
        """What confined the probe beyond its namespaces (capability sets, seccomp, no_new_privs, read-only file
        systems), each distinct observation with the combinations it was seen in: information, never a verdict."""
        found = [{**json.loads(seen), "combinations": sorted(combos)} for seen, combos in self._hardening.items()]
        return sorted(found, key=lambda h: (-len(h["combinations"]), h["combinations"]))

    def __len__(self) -> int:
        return len(self._results)


def verdict(counts: dict[str, int]) -> str:
    """A namespace's verdict: violated if any failed; else error if any errored; else conformant if any passed."""
    if counts["failed"]:
        return "violated"
    if counts["error"]:
        return "error"
    if counts["passed"]:
        return "conformant"
    return "untested"


def overall(summary: dict[str, dict[str, Any]]) -> str:
    """The run's verdict: its namespaces' and areas' counts taken together, by the same rule."""
    return verdict({k: sum(entry.get(k, 0) for entry in summary.values()) for k in OUTCOMES})


IDENTITY_CHECK = ".namespace_identity"  # the checks that compare namespace identities, not behaviour


def summarize(
    results: Iterable[Result], namespaces: Iterable[str], areas: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """One entry per namespace checked, then per hardening area judged, with its verdict, outcome counts and the
    basis of the verdict: how many behavioural results passed, how many identity ones (for an area: facts ones),
    and so what the verdict rests on."""
    summary = {name: dict.fromkeys(OUTCOMES, 0) for name in [*namespaces, *areas]}
    is_area = set(areas)
    passed: dict[str, dict[str, int]] = {}
    for result in sorted(results, key=lambda r: r.area is not None):  # an area's entry after the namespaces'
        summary.setdefault(result.subject, dict.fromkeys(OUTCOMES, 0))[result.outcome] += 1
        if result.area is not None:
            is_area.add(result.area)
        if result.outcome == "passed":
            kind = (
                "facts"
                if result.rests_on == "facts"
                else "identity"
                if result.check.endswith(IDENTITY_CHECK)
                else "behavioural"
            )
            tally_of = passed.setdefault(result.subject, {"behavioural": 0, "identity": 0, "facts": 0})
            tally_of[kind] += 1
    return {
        name: {
            "verdict": verdict(counts),
            **counts,
            "basis": basis(passed.get(name, {"behavioural": 0, "identity": 0, "facts": 0}), area=name in is_area),
        }
        for name, counts in summary.items()
    }


def basis(passed: dict[str, int], *, area: bool = False) -> dict[str, Any]:
    """What a verdict rests on: `behaviour` (a behavioural check passed), `identity only` (only the namespace
    identity passed: a hollow pass, however conformant it reads) or `nothing`; for a hardening area, `facts only`
    where only checks of what the kernel reports of the sandbox passed (its status, its mount table)."""
    if passed["behavioural"]:
        rests_on = "behaviour"
    elif passed["identity"]:
        rests_on = "identity only"
    elif passed.get("facts"):
        rests_on = "facts only"
    else:
        rests_on = "nothing"
    found = {"behavioural_passed": passed["behavioural"], "identity_passed": passed["identity"], "rests_on": rests_on}
    if area:
        found["facts_passed"] = passed.get("facts", 0)
    return found


def basis_text(entry: dict[str, Any]) -> str:
    """A summary entry's basis for a person: 'behaviour (12 behavioural results passed)', 'identity only'."""
    found = entry.get("basis")
    if not isinstance(found, dict):
        return ""
    if found.get("rests_on") == "behaviour":
        return f"behaviour ({plural(found.get('behavioural_passed', 0), 'behavioural result')} passed)"
    return str(found.get("rests_on", ""))


def hardening_text(seen: dict[str, Any]) -> str:
    """One hardening observation for a person: 'CapEff 000001fffeffffff, CapBnd ..., seccomp 2, no_new_privs 1,
    read-only /usr'; a fact the sandbox's kernel did not give is left out."""
    names = {"cap_eff": "CapEff", "cap_bnd": "CapBnd", "seccomp": "seccomp", "no_new_privs": "no_new_privs"}
    parts = [f"{name} {seen[key]}" for key, name in names.items() if key in seen]
    read_only = seen.get("read_only")
    parts.append("read-only " + ", ".join(read_only) if read_only else "nothing read-only")
    return ", ".join(parts)


def runtime_label(runtime: dict[str, Any]) -> str:
    """The runtime as a reader names it: `name` (profile file, version's first line)."""
    details = [str(runtime[k]).splitlines()[0] for k in ("profile", "version") if runtime.get(k)]
    return f"{runtime.get('name', '?')}" + (f" ({', '.join(details)})" if details else "")


def problems(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failed and errored results, failures first."""
    return sorted((r for r in results if r["outcome"] in ("failed", "error")), key=lambda r: r["outcome"] == "error")


def skipped_by_reason(results: Iterable[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Skipped results grouped by reason, the most frequent reason first: (reason, [labels])."""
    groups: dict[str, list[str]] = {}
    for r in results:
        if r["outcome"] == "skipped":
            groups.setdefault(r.get("reason", ""), []).append(label(r))
    return sorted(groups.items(), key=lambda item: -len(item[1]))


def by_check(items: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Results (or baseline changes) grouped by check, in their order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(item["check"], []).append(item)
    return groups


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def tally(count: int, outcome: str) -> str:
    """'3 passed', '1 failed', '2 errors', '4 skipped'."""
    return plural(count, outcome) if outcome == "error" else f"{count} {outcome}"


def problem_tally(group: list[dict[str, Any]]) -> str:
    """'2 failed, 1 error': how a check's failures and errors add up."""
    return ", ".join(tally(n, o) for o in ("failed", "error") if (n := sum(r["outcome"] == o for r in group)))
