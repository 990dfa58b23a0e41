"""A test-only plugin (`-p tests.killpoint`): the first check to run announces itself, then hangs.

The announcement goes to the FIFO named by NSCONFORM_KILLPOINT, so that a test can SIGKILL the run
at a moment when sandboxes are alive, without sleeping to guess that moment. The check hangs through
SIGINT too: an xdist worker whose controller is gone interrupts itself so (execnet), and ends by
os._exit some seconds later. With
NSCONFORM_KILLPOINT_CONTROLLER naming another FIFO, the controller first makes a journaled scratch
directory of its own (as a controller that makes host objects would) and announces its path there.
"""

from __future__ import annotations

import os
import signal

import pytest

from nsconform.host.observe import make_scratch_dir


def pytest_sessionstart(session: pytest.Session) -> None:
    path = os.environ.get("NSCONFORM_KILLPOINT_CONTROLLER")
    if path and not hasattr(session.config, "workerinput"):
        made, _ = make_scratch_dir("controller")
        with open(path, "w") as fifo:
            fifo.write(f"{os.getpid()} {made}\n")


def pytest_runtest_call(item: pytest.Item) -> None:
    sandbox = item.funcargs.get("sandbox")
    path = os.environ.get("NSCONFORM_KILLPOINT")
    if sandbox is None or not path:
        return
    with open(path, "w") as fifo:
        fifo.write(f"{os.getpid()} {sandbox.pid}\n")
    while True:
        try:
            signal.pause()
        except KeyboardInterrupt:
            continue
