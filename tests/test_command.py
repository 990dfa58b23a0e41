"""The `nsconform` command as a newcomer meets it: `--help` lists nsconform's own options (from the one table
of them) and points to pytest's, a path option is taken with a space as with '=', and messages name options
as the user wrote them (`--attach` in the command, `--nsc-attach` in pytest)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nsconform.locations import PACKAGE
from nsconform.settings import OPTIONS
from tests.conftest import ROOT

UNSHARE = PACKAGE / "runtimes" / "bundled" / "unshare.toml"


def command(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nsconform", *args], cwd=cwd, capture_output=True, text=True)


def pytest_run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, capture_output=True, text=True
    )


def test_help_lists_every_option_of_the_table_and_points_to_pytest() -> None:
    done = command("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: nsconform ")
    for option in OPTIONS:
        assert f"--{option.name}" in done.stdout
        assert f"--nsc-{option.name}" not in done.stdout
    assert "--kernels LIST" in done.stdout and "--kernel-timeout S" in done.stdout
    assert "pytest --help" in done.stdout
    assert "pytest.main()" not in done.stdout


def test_a_path_option_after_a_space_is_taken_as_with_equals(tmp_path: Path) -> None:
    """From the checkout, a bundled profile's path after a space: the command runs on its own configuration."""
    relative = UNSHARE.relative_to(ROOT) if UNSHARE.is_relative_to(ROOT) else UNSHARE
    runs = [
        command("--runtime", str(relative), "--collect-only", "-q", "--namespaces=uts", f"--report-dir={tmp_path}"),
        command(f"--runtime={relative}", "--collect-only", "-q", "--namespaces=uts", f"--report-dir={tmp_path}"),
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr + done.stdout[-2000:]
        assert "uts.py::test_hostname_private[uts]" in done.stdout
        assert "tests/" not in done.stdout  # the project's own tests are not collected
    ids = [[line for line in done.stdout.splitlines() if re.match(r"\S+\.py::", line)] for done in runs]
    assert ids[0] == ids[1]


def test_plain_pytest_never_runs_on_the_packages_configuration_unasked() -> None:
    """pytest, given a path in the package after a space, would take the package's pytest.ini for its own and
    collect the package and the checkout's tests with it: a usage error that says to write '='."""
    relative = UNSHARE.relative_to(ROOT)
    done = pytest_run("--collect-only", "-q", "--nsc-runtime", str(relative))
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-2000:]
    assert f"write --nsc-runtime={relative}" in done.stderr
    assert "::" not in done.stdout  # nothing was collected
    joined = pytest_run("--collect-only", "-q", "--nsc-namespaces=uts", f"--nsc-runtime={relative}")
    assert joined.returncode == 0, joined.stderr
    assert "isolation_checks/uts.py::test_hostname_private[uts]" in joined.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attach", "abc"], "--attach abc: not a process id"),
        (["--probe-timeout=0"], "--probe-timeout must be a number of seconds greater than 0"),
        (["--combinations=declared"], "--combinations declared needs a runtime profile"),
        (["--kernels=host", "--kernel-timeout", "soon"], "--kernel-timeout needs a number of seconds, not 'soon'"),
    ],
)
def test_messages_name_options_as_the_command_takes_them(tmp_path: Path, args: list[str], message: str) -> None:
    done = command(*args, "--collect-only", "-q", cwd=tmp_path)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert message in done.stderr
    assert "--nsc-" not in done.stderr


def test_messages_name_options_as_pytest_takes_them() -> None:
    done = pytest_run("--collect-only", "-q", "--nsc-attach=abc")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--nsc-attach abc: not a process id" in done.stderr
