"""A worker's sandboxes: one live sandbox at a time, reused by every check of its combination."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from nsconform.namespaces import Combination, combo_id
from nsconform.sandbox.sandbox import Sandbox, SandboxError
from nsconform.settings import Settings


class SandboxPool:
    """One live sandbox at a time per worker, reused by every check of its combination.

    A sandbox that died (a probe timeout, a crash) is replaced on the next request; a
    runtime that failed to start one keeps that error for its combination instead of retrying.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: tuple[str, Sandbox] | None = None
        self.failed: dict[str, SandboxError] = {}

    def get(self, combination: Combination) -> Sandbox:
        key = combo_id(combination)
        if key in self.failed:
            raise SandboxError(f"the sandbox for {key} could not be started: {self.failed[key]}")
        if self.current and self.current[0] == key and self.current[1].alive:
            return self.current[1]
        self.close()
        try:
            sandbox = start(self.settings, combination)
        except SandboxError as e:
            self.failed[key] = e
            raise
        self.current = (key, sandbox)
        return sandbox

    def close(self) -> None:
        if self.current:
            self.current[1].close()
            self.current = None


def start(settings: Settings, combination: Iterable[str]) -> Sandbox:
    """A new sandbox of the session's runtime; the test is skipped where that runtime is unavailable."""
    reason = settings.runtime.unavailable()
    if reason:
        pytest.skip(f"runtime {settings.runtime.name}: {reason}")
    return Sandbox(settings.runtime.launch(frozenset(combination)), settings.probe_timeout)
