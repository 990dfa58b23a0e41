"""Results of a run: one per check and combination, merged from the phases pytest reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

OUTCOMES = ("passed", "failed", "skipped", "error")
# How bad an outcome is, when phases disagree (a passed call with a failed teardown is an error).
SEVERITY = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


@dataclass
class Result:
    id: str
    check: str
    namespace: str
    combination: list[str]
    expected: str
    outcome: str
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ResultBook:
    """Collects the phase records of each test (from this process or from xdist workers)."""

    def __init__(self) -> None:
        self._results: dict[str, Result] = {}

    def add(self, record: dict[str, Any]) -> None:
        """Merge one phase's record: the first non-passing phase gives the outcome and reason."""
        current = self._results.get(record["id"])
        if current is None:
            self._results[record["id"]] = Result(**{k: record[k] for k in Result.__dataclass_fields__})
            return
        current.evidence.update(record.get("evidence", {}))
        if current.outcome == "passed" and record["outcome"] != "passed":
            current.outcome = "error" if record["phase"] == "teardown" else record["outcome"]
            current.reason = record["reason"]

    def results(self) -> list[Result]:
        return sorted(self._results.values(), key=lambda r: (r.namespace, r.check, len(r.combination), r.combination))

    def __len__(self) -> int:
        return len(self._results)


def verdict(counts: dict[str, int]) -> str:
    """CONTRACT: violated if any failed; else error if any errored; else conformant if any passed."""
    if counts["failed"]:
        return "violated"
    if counts["error"]:
        return "error"
    if counts["passed"]:
        return "conformant"
    return "untested"


def summarize(results: Iterable[Result], namespaces: Iterable[str]) -> dict[str, dict[str, Any]]:
    """One entry per namespace checked, with its verdict and outcome counts."""
    summary = {ns: dict.fromkeys(OUTCOMES, 0) for ns in namespaces}
    for result in results:
        summary.setdefault(result.namespace, dict.fromkeys(OUTCOMES, 0))[result.outcome] += 1
    return {ns: {"verdict": verdict(counts), **counts} for ns, counts in summary.items()}
