"""--nsc-baseline: compare a run's results with an earlier conformance.json.

A regression is a result that passed in the baseline and now fails, errors or is missing; an
improvement is one that failed, errored or was skipped there and now passes. A pass that is now a skip
(a check that finds nothing to examine is skipped, never passed) is neither: the comparison counts them.
Results are matched by check and combination, so a baseline from another checkout or rootdir still matches,
and a check renamed since (RENAMED) is matched under its new name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nsconform.namespaces import combo_id
from nsconform.report.conformance import load_report
from nsconform.report.results import Result, label

MISSING = "missing"
# Checks renamed since: old name -> new name (the filesystem-instance checks of each namespace, one shape)
RENAMED = {
    "net.sysfs_shows_own_links": "net.fs_instances_own",
    "ipc.mqueue_mounts_own": "ipc.fs_instances_own",
    "cgroup.cgroupfs_shows_own_hierarchy": "cgroup.fs_instances_own",
}


@dataclass(frozen=True)
class Change:
    check: str
    combination: list[str]
    was: str
    now: str  # an outcome, or "missing"
    reason: str

    @property
    def label(self) -> str:
        return label(asdict(self))


@dataclass
class Comparison:
    baseline: str
    regressions: list[Change]
    improvements: list[Change]
    now_skipped: int = 0  # passed in the baseline, skipped now: no regression

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.baseline,
            "regressions": [asdict(c) for c in self.regressions],
            "improvements": [asdict(c) for c in self.improvements],
            "now_skipped": self.now_skipped,
        }


@dataclass(frozen=True)
class Baseline:
    path: Path
    results: dict[tuple[str, str], dict[str, Any]]

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """Read a baseline; a file that is no nsconform/1 report raises ReportError."""
        document = load_report(path, what="--nsc-baseline")
        return cls(path, {key(r): r for r in document["results"]})

    def compare(self, results: Iterable[Result]) -> Comparison:
        now = {key(r.to_json()): r for r in results}
        regressions, improvements, now_skipped = [], [], 0
        for k, before in self.results.items():
            after = now.get(k)
            outcome = after.outcome if after else MISSING
            now_skipped += before["outcome"] == "passed" and outcome == "skipped"
            if before["outcome"] == "passed" and outcome in ("failed", "error", MISSING):
                reason = after.reason if after else "no such result in this run"
                regressions.append(change(before, outcome, reason))
            elif before["outcome"] != "passed" and outcome == "passed":
                improvements.append(change(before, outcome, f"was: {before.get('reason', '')}"))
        return Comparison(str(self.path), sorted(regressions, key=order), sorted(improvements, key=order), now_skipped)


def change(before: dict[str, Any], now: str, reason: str) -> Change:
    return Change(named(before), sorted(before["combination"]), before["outcome"], now, reason)


def named(result: dict[str, Any]) -> str:
    return RENAMED.get(result["check"], result["check"])


def key(result: dict[str, Any]) -> tuple[str, str]:
    return named(result), combo_id(result["combination"])


def order(change: Change) -> tuple[str, int, list[str]]:
    return change.check, len(change.combination), change.combination
