"""Headless Chromium (Debian's, installed by install.sh) for the tests of the HTML reports.

Each call uses a new empty profile (in the test's own tmp_path), no network features, and its own
session: whatever the browser leaves running when it exits (its crash handler ...) is killed with
that session's process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium(workdir: Path, *args: str, timeout: float = 90) -> str:
    """Run Chromium headless with `args`; returns its stdout (for --dump-dom: the DOM after scripts ran)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (install.sh installs Debian's chromium)")
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir)
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)
    assert process.returncode == 0, f"chromium exited {process.returncode}: {err[-2000:]}"
    return out


def dump_dom(page: Path, fragment: str = "") -> str:
    return chromium(page.parent, "--dump-dom", page.resolve().as_uri() + fragment)


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    chromium(page.parent, f"--screenshot={png}", f"--window-size={width},{height}", page.resolve().as_uri())
    assert png.is_file(), f"chromium wrote no screenshot {png}"
