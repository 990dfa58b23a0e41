"""A pytest plugin for the project's tests (`-p tests.writespy`): logs each report file written.

Every write goes to the file named by $NSCONFORM_WRITE_LOG as `<pid> <file name>`, so that a test
can tell which process of an xdist run wrote the reports.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nsconform.report import writing


def pytest_configure(config: pytest.Config) -> None:
    real = writing.write_atomic

    def logged(path: Path, text: str) -> None:
        with open(os.environ["NSCONFORM_WRITE_LOG"], "a") as log:
            log.write(f"{os.getpid()} {path.name}\n")
        real(path, text)

    writing.write_atomic = logged  # type: ignore[assignment]
