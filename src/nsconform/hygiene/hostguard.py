"""The session's guard of the host: reap dead runs' leftovers first, audit this run's doings at the end.

Registered by the plugin in the controller (or the only process of a serial run). What this run's
journals list as made and not removed fails the session, named in the terminal and in the report;
what a runtime left carrying the run's id, and what else changed on the host meanwhile (another
process's doing), are reported without failing it (nsconform.hygiene.audit).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nsconform.hygiene import audit, reaper

AUDIT = pytest.StashKey[dict[str, Any]]()
SHOWN = 20  # lines of a section in the terminal; the report holds them all
SECTIONS = (
    ("left", "this run left on the host"),
    ("runtime_left", "the runtime left"),
    ("changed_meanwhile", "changed meanwhile, not by this run"),
    ("unjudged", "could not be judged"),
)


class HostGuard:
    def __init__(self, config: pytest.Config, run: str, *, check: bool) -> None:
        self.config = config
        self.run = run
        self.check = check
        self.reaped: list[str] = []
        self.before: audit.Snapshot | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionstart(self, session: pytest.Session) -> Iterator[None]:
        """Reap, then take the host's picture, once xdist has started its workers: they start up (import,
        collect) meanwhile, and run no check before the controller's test loop, which begins after this."""
        result = yield
        self.reaped = reaper.reap()
        self.before = audit.snapshot() if self.check else None
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        result: dict[str, Any] = {"run": self.run, "reaped_at_start": self.reaped, "checked": self.check}
        if self.before is not None:
            result.update(audit.judge(self.run, self.before))
            if result["left"] and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.config.stash[AUDIT] = result

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        result = self.config.stash.get(AUDIT, {})
        if self.reaped:
            terminalreporter.write_sep("-", f"nsconform reaped what dead harness processes left ({len(self.reaped)})")
            for line in self.reaped:
                terminalreporter.write_line(f"  {line}")
        for key, title in SECTIONS:
            found = result.get(key)
            if not found:
                continue
            lines = found if isinstance(found, list) else list(changed(found))
            terminalreporter.write_sep(
                "=" if key == "left" else "-", f"nsconform host audit: {title}", red=key == "left"
            )
            for entry in lines[:SHOWN]:
                terminalreporter.write_line(f"  {entry}")
            if len(lines) > SHOWN:
                terminalreporter.write_line(f"  ... {len(lines) - SHOWN} more: host_audit.{key} in the report")


def changed(changes: dict[str, dict[str, list[str]]]) -> Iterator[str]:
    for aspect, diff in changes.items():
        for sign, entries in (("+", diff["added"]), ("-", diff["removed"])):
            for entry in entries:
                yield f"{aspect} {sign} {entry}"
