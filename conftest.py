"""The conformance suite's own configuration, on top of the nsconform plugin (fixtures/plugin.py).

Installed (`pip install -e .`), the plugin arrives through its pytest11 entry point; from a bare
checkout, this file loads it. It also makes xdist hand every combination to one worker, so that
each combination's sandbox is built once per run, not once per worker.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

if not any(ep.name == "nsconform" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["fixtures.plugin"]


def pytest_xdist_make_scheduler(config: Any, log: Any) -> Any:
    """With the default --dist load, schedule by combination (the test id's parameter)."""
    if config.getoption("dist") != "load":
        return None
    from fixtures.scheduling import CombinationScheduling

    return CombinationScheduling(config, log)
