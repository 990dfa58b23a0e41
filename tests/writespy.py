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
    real = writing.write_set

    def logged(directory: Path, texts: dict[str, str | None]) -> list[Path]:
        with open(os.environ["NSCONFORM_WRITE_LOG"], "a") as log:  # the files written (None: one removed)
            log.writelines(f"{os.getpid()} {name}\n" for name, text in texts.items() if text is not None)
        return real(directory, texts)

    writing.write_set = logged  # type: ignore[assignment]
