"""xdist scheduling by combination: all checks of one combination go to one worker, in one batch.

xdist's public way to group tests, the `xdist_group` mark with `--dist loadgroup`, appends `@group` to
every test id, so that ids would differ between serial and parallel runs (and `--nsc-baseline` would
compare different ids). xdist has no public way to choose a scope otherwise: this module is the one
place that builds on its `LoadScopeScheduling` and the method it splits scopes with, and
tests/test_scheduling.py fails loudly on an xdist release that changes them.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling


def combination_scope(nodeid: str) -> str:
    """The scope of a test: its parameter id (`...[pid+uts]` -> `pid+uts`), i.e. its combination."""
    if nodeid.endswith("]") and "[" in nodeid:
        return nodeid[nodeid.rindex("[") + 1 : -1]
    return nodeid


class CombinationScheduling(LoadScopeScheduling):
    """LoadScopeScheduling whose scope is the test's combination."""

    def _split_scope(self, nodeid: str) -> str:
        return combination_scope(nodeid)
