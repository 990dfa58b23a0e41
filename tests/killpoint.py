"""A test-only plugin (`-p tests.killpoint`): the first check to run announces itself, then hangs.

The announcement goes to the FIFO named by NSCONFORM_KILLPOINT, so that a test can SIGKILL the run
at a moment when sandboxes are alive, without sleeping to guess that moment.
"""

from __future__ import annotations

import os
import signal


def pytest_runtest_call(item) -> None:
    sandbox = item.funcargs.get("sandbox")
    path = os.environ.get("NSCONFORM_KILLPOINT")
    if sandbox is None or not path:
        return
    with open(path, "w") as fifo:
        fifo.write(f"{os.getpid()} {sandbox.pid}\n")
    while True:
        signal.pause()
