"""The session's guard of the host: reap a killed run's leftovers first, audit the host at the end.

Registered by the plugin in the controller (or the only process of a serial run). What the
session left on the host fails it, with the difference in the terminal and in the report; with a
profile's runtime, the runtime's own leftovers (empty cgroups, mounts under /run, named netns) are
reported as its finding instead (with the native runtime, which touches none of those, they are
another process's doing, and reported the same way).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nsconform.hygiene import audit, reaper

AUDIT = pytest.StashKey[dict[str, Any]]()


class HostGuard:
    def __init__(self, config: pytest.Config, *, check: bool) -> None:
        self.config = config
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
        result: dict[str, Any] = {"reaped_at_start": self.reaped, "checked": self.check}
        if self.before is not None:
            changes = audit.difference(self.before, audit.snapshot())
            traces, runtime_leftovers = audit.split_runtime_findings(changes)
            result.update(traces=traces, runtime_leftovers=runtime_leftovers)
            if traces and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.config.stash[AUDIT] = result

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        result = self.config.stash.get(AUDIT, {})
        if self.reaped:
            terminalreporter.write_sep("-", f"nsconform reaped {len(self.reaped)} leftovers of killed runs")
            for line in self.reaped:
                terminalreporter.write_line(f"  {line}")
        for title, key in (("the session changed the host", "traces"), ("the runtime left", "runtime_leftovers")):
            changes = result.get(key)
            if changes:
                terminalreporter.write_sep("=", f"nsconform host audit: {title}", red=key == "traces")
                for aspect, diff in changes.items():
                    for sign, entries in (("+", diff["added"]), ("-", diff["removed"])):
                        for entry in entries:
                            terminalreporter.write_line(f"  {aspect} {sign} {entry}")
