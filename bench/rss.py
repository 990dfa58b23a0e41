"""A bench-only pytest plugin (`-p bench.rss`): each process writes its peak RSS when its session ends."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def pytest_sessionfinish(session) -> None:
    out = os.environ.get("NSCONFORM_BENCH_RSS_DIR")
    if out:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        worker = os.environ.get("PYTEST_XDIST_WORKER", "controller")
        Path(out, f"{worker}-{os.getpid()}").write_text(str(kib))
