"""Helpers for the project's own tests: run the conformance suite in-process on any runtime."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nsconform.host.mounts import journaled_mount
from nsconform.host.observe import scratch_dir
from nsconform.inside import probe
from nsconform.namespaces import combo_id
from nsconform.report.schema import validate
from nsconform.settings import SETTINGS
from tests import hostwatch

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parent.parent


HOSTWATCH = pytest.StashKey[hostwatch.Watch]()
HOST_CHANGES = pytest.StashKey[tuple[list[str], list[str]]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The controller (or a serial run) takes the host as the project's tests find it (tests/hostwatch.py)."""
    if not hasattr(session.config, "workerinput"):
        session.config.stash[HOSTWATCH] = hostwatch.Watch()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The project's tests put back what they change on the host: the session fails for what it did not."""
    watch = session.config.stash.get(HOSTWATCH, None)
    if watch is None:
        return
    session.config.stash[HOST_CHANGES] = watch.finish()
    if session.config.stash[HOST_CHANGES][0] and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if HOST_CHANGES not in config.stash:
        return
    blamed, others = config.stash[HOST_CHANGES]
    if blamed:
        terminalreporter.section("the project's tests changed the host and did not put it back", red=True)
        for line in blamed:
            terminalreporter.line(line, red=True)
    if others:
        terminalreporter.section("the host changed meanwhile, by other programs' doing (not failed)")
        for line in others:
            terminalreporter.line(line)


@pytest.fixture
def quiet_host() -> Iterator[None]:
    """For a test that compares host state before and after it, beyond the journals (the rootless user's
    processes): no other such test goes on meanwhile, of this run or of another checkout's on the same
    host (the rootless user is the host's). flock on the temporary directory itself (no polling, and no
    lock file left behind)."""
    fd = os.open(tempfile.gettempdir(), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def host_mount_table(operation: int) -> Iterator[None]:
    """flock (LOCK_SH or LOCK_EX) on tests/data: a test that puts namespace files in the host's mount table (a bound
    /proc/PID/ns/NS, a dockerd's netns files, and its containerd shims' listening sockets) holds it exclusively; a
    test whose sandboxes copy the host's mount table with the capabilities to join them (unshare, firejail, an
    unshare target to attach to), and whose verdicts would change with them, holds it shared."""
    fd = os.open(Path(__file__).parent / "data", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def stable_host_mounts() -> Iterator[None]:
    """No namespace file is put in the host's mount table by another test while this one runs (host_mount_table)."""
    with host_mount_table(fcntl.LOCK_SH):
        yield


@contextmanager
def host_namespace_file(ns: str) -> Iterator[str]:
    """This process's `ns` namespace file (the host's) bound on a journaled scratch file, as a volume of
    /run/netns would hold one (never `ip netns add`, which leaves /run/netns a shared mount on the host), for the
    block. The caller holds host_mount_table(LOCK_EX)."""
    with scratch_dir("nsfile", mode=0o711) as parent:
        path = os.path.join(parent, ns)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        with journaled_mount(
            path, None, lambda: probe.mount(f"/proc/{os.getpid()}/ns/{ns}", path, None, probe.MS_BIND)
        ):
            yield path


@pytest.fixture(autouse=True)
def reports_match_their_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every conformance.json a test writes, in its tmp_path or its pytester directory, matches
    nsconform/report/schema.json, read closed: a field the schema does not describe fails the test."""
    yield
    places = {request.node.funcargs[name] for name in ("tmp_path",) if name in request.node.funcargs}
    if "pytester" in request.node.funcargs:
        places.add(request.node.funcargs["pytester"].path)
    for place in places:
        for report in sorted(Path(place).rglob("conformance.json")):
            validate_written(json.loads(report.read_text()), report)


def validate_written(doc: dict[str, Any], path: Path) -> None:
    __tracebackhide__ = True
    try:
        validate(doc, closed=True)
    except ValueError as e:
        pytest.fail(f"{path} does not match schema.json: {e}")


class RuntimeOverride:
    """A plugin that swaps the session's runtime for a (leaky) one built in the test."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[SETTINGS] = dataclasses.replace(config.stash[SETTINGS], runtime=self.runtime)


@dataclass
class SuiteRun:
    ret: int
    report: dict[str, Any]
    output: str

    def outcomes(self, check: str) -> dict[str, str]:
        """combination id -> outcome, for one check."""
        return {combo_id(r["combination"]): r["outcome"] for r in self.report["results"] if r["check"] == check}

    def verdicts(self) -> dict[str, str]:
        return {ns: entry["verdict"] for ns, entry in self.report["summary"].items()}


@pytest.fixture
def run_suite(pytester: pytest.Pytester):
    """run_suite(*pytest_args, runtime=None, plugins=(), audit=False): the suite in-process; returns its report.

    The host audit stays off unless asked for; it judges the inner run's own journal, so other tests
    changing the host meanwhile do not fail it."""

    def run(*args: str, runtime: Any = None, plugins: tuple[object, ...] = (), audit: bool = False) -> SuiteRun:
        report_dir = pytester.path / "reports"
        plugins = (*plugins, RuntimeOverride(runtime)) if runtime is not None else plugins
        result = pytester.runpytest_inprocess(
            "-c",
            str(ROOT / "pytest.ini"),
            "--rootdir",
            str(ROOT),
            "-p",
            "no:cacheprovider",
            "--nsc-report-dir",
            str(report_dir),
            *(() if audit else ("--nsc-no-host-audit",)),
            *args,
            plugins=list(plugins),
        )
        path = report_dir / "conformance.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        return SuiteRun(ret=result.ret, report=report, output=f"{result.stdout}\n{result.stderr}")

    return run


def check_node(check: str, combination: str) -> str:
    """The node id of check `ns.name` on `combination`, e.g. ('uts.hostname_private', 'pid+uts')."""
    module, name = check.split(".", 1)
    return f"{ROOT}/isolation_checks/{module}.py::test_{name}[{combination}]"
