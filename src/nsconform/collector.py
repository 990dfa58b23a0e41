"""Python's garbage collector in a long run: what lives for the whole session is walked once, not at
every collection.

A worker collects ~1500 items and keeps them, with their fixtures, to the end. Frozen once collected,
they are left out of the automatic collections of the run and of the collection pytest makes when it
cleans up (it looks there for objects whose finalizer raised); they are unfrozen after that, so a run
inside another process (pytester) leaves nothing frozen. At the interpreter's exit, everything is
frozen again: the exit would otherwise walk every object of the run, several times (0.2-0.3 s a process).
"""

from __future__ import annotations

import atexit
import gc

import pytest


class LongLived:
    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        gc.freeze()


def register(config: pytest.Config) -> None:
    """Call from a pytest_configure that runs before pytest's own plugins' (tryfirst): cleanups run in the
    reverse order of their registration, so the unfreeze comes after pytest's cleanup collection."""
    config.add_cleanup(gc.unfreeze)
    config.add_cleanup(lambda: atexit.register(gc.freeze))
    config.pluginmanager.register(LongLived(), "nsconform-gc")
