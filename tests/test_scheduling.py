"""xdist hands all checks of one combination to one worker (nsconform.scheduling), and ids stay as in a
serial run. The scheduler builds on xdist internals that have no public form: this fails loudly when an
xdist release changes them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

from xdist.scheduler import LoadScopeScheduling

from nsconform.scheduling import CombinationScheduling, combination_scope
from tests.conftest import ROOT


def test_xdist_still_has_the_scope_hook_the_scheduler_overrides() -> None:
    """LoadScopeScheduling splits node ids into scopes with `_split_scope`; if xdist renames or drops it, the
    scheduler silently falls back to per-module scopes (one sandbox per worker and combination)."""
    assert callable(getattr(LoadScopeScheduling, "_split_scope", None)), (
        "this xdist release has no LoadScopeScheduling._split_scope: nsconform.scheduling must be adapted"
    )
    assert CombinationScheduling._split_scope is not LoadScopeScheduling._split_scope
    assert combination_scope("isolation_checks/uts.py::test_hostname_private[pid+uts]") == "pid+uts"


def test_each_combination_runs_on_one_worker_with_serial_ids(tmp_path) -> None:
    """A real `-n 2` run: every combination's checks ran on a single worker, and no id carries xdist's
    `@group` suffix."""
    options = ["--nsc-namespaces=uts,ipc", "--nsc-no-host-audit", f"--nsc-report-dir={tmp_path}"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[\s*\d+%\] \w+ (\S+)", run.stdout, re.M):
        assert "@" not in nodeid
        workers[combination_scope(nodeid)].add(worker)
    assert {"none", "uts", "ipc", "ipc+uts"} <= set(workers)
    assert all(len(ran_on) == 1 for ran_on in workers.values()), dict(workers)
