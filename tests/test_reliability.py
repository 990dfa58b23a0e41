"""Reliability: no trace on the host, kill safety, timeouts, hostile sandboxes, bad input, determinism."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from nsconform.host.observe import make_scratch_dir
from nsconform.hygiene import identity, journal, naming
from nsconform.runtimes.declared import Expect
from nsconform.sandbox.sandbox import Launch
from tests.conftest import ROOT

PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]


def run_pytest(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, audit: bool = False
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PYTEST, *(() if audit else ("--nsc-no-host-audit",)), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def outcomes(report_dir: Path) -> dict[str, str]:
    import json

    doc = json.loads((report_dir / "conformance.json").read_text())
    return {r["id"]: r["outcome"] for r in doc["results"]}


# -- the audit ----------------------------------------------------------------------------------


class LeaveScratchDir:
    """A plugin that makes a journaled scratch dir and skips its cleanup, as a buggy fixture would."""

    def __init__(self) -> None:
        self.path = ""

    def pytest_runtest_setup(self) -> None:
        self.path = self.path or make_scratch_dir("forgotten")[0]


def test_audit_fails_a_session_that_leaves_a_trace(run_suite) -> None:
    """What the run's journal lists as made and not removed fails it, and is named in the report."""
    leaver = LeaveScratchDir()
    try:
        run = run_suite(
            "--nsc-namespaces",
            "uts",
            f"{ROOT}/isolation_checks/uts.py::test_namespace_identity",
            plugins=(leaver,),
            audit=True,
        )
    finally:
        os.rmdir(leaver.path)
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    assert [line for line in run.report["host_audit"]["left"] if f"path {leaver.path} " in line], run.output
    assert "nsconform host audit: this run left on the host" in run.output
    assert leaver.path in run.output


def test_audit_is_clean_after_a_full_sound_run(run_suite) -> None:
    """The native runtime's whole default matrix leaves nothing its journals list, whatever other tests of
    this run change on the host meanwhile."""
    run = run_suite(str(ROOT / "isolation_checks"), audit=True)
    assert run.ret == pytest.ExitCode.OK, run.output
    assert run.report["host_audit"]["left"] == []


def test_no_host_audit_option_turns_it_off(run_suite) -> None:
    run = run_suite("--nsc-namespaces", "uts", "--nsc-no-host-audit", f"{ROOT}/isolation_checks/uts.py")
    assert run.report["host_audit"]["checked"] is False
    assert "left" not in run.report["host_audit"]


# -- kill safety -------------------------------------------------------------------------------


def test_a_killed_worker_does_not_leave_its_sandbox(tmp_path: Path) -> None:
    """SIGKILL of one xdist worker mid-check: its sandbox dies with it and the session's audit is clean."""
    fifo = tmp_path / "killpoint"
    os.mkfifo(fifo)
    run = subprocess.Popen(
        [
            *PYTEST,
            "-p",
            "tests.killpoint",
            "-n",
            "2",
            "--nsc-namespaces",
            "uts,pid",
            "--nsc-report-dir",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        env={**os.environ, "NSCONFORM_KILLPOINT": str(fifo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        with open(fifo) as announcements:
            worker_pid, sandbox_pid = map(int, announcements.readline().split())
            os.kill(worker_pid, signal.SIGKILL)
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(sandbox_pid).wait(timeout=30)  # the probe dies with its worker
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        output = run.communicate()[0]
        run.wait()
    assert not psutil.pid_exists(sandbox_pid), output[-2000:]


# -- timeouts and hostile sandboxes ---------------------------------------------------------------


@dataclass(frozen=True)
class ScriptRuntime:
    """A 'runtime' whose sandbox is a shell script instead of the probe: hostile or broken."""

    script: str
    name: str = "hostile"
    profile: str | None = None
    isolates: frozenset[str] | None = None
    any_combination: bool = True

    expect: Expect = dataclasses.field(default_factory=Expect)

    def unavailable(self) -> str | None:
        return None

    def buildable(self, combination: frozenset[str]) -> frozenset[str]:
        return combination

    def launch(self, combination: frozenset[str]) -> Launch:
        tag = naming.unique("probe")
        return Launch(argv=["/bin/sh", "-c", self.script, tag], code="", claimed=combination, name=tag)


HOSTILE = {
    "hangs": ("exec sleep 600", "did not answer within 1 s"),
    # Whether sh has closed the pipe before the harness writes to it is a race: both are right.
    "never_reads": ("exec sleep 600 </dev/null", "closed its input|did not answer within 1 s"),
    "exits": ("exit 3", "exited without answering|closed its input"),
    "garbage": ("echo 'rm -rf /'; exec cat >/dev/null", "not JSON"),
    "megabytes": ("head -c 3000000 /dev/zero | tr '\\0' a; exec cat >/dev/null", "longer than"),
    "not_an_object": ("echo '[1]'; exec cat >/dev/null", "not an object"),
    "no_identity": ('echo \'{"hello": {"ns": {}}}\'; exec cat >/dev/null', "not a complete hello"),
    "bad_answers": (
        'echo \'{"hello": {"host_pid": \'$$\', "ns": {"uts": [1, 2]}, '
        '"identity": {"pid": 1, "ppid": 0, "uid": 0, "gid": 0}}}\'; '
        "while read -r l; do echo '{\"ok\": 7}'; done",
        "reported another uts namespace",
    ),
}


@pytest.mark.parametrize("behaviour", sorted(HOSTILE))
def test_hostile_sandbox_gives_errors_not_verdicts(behaviour: str, run_suite) -> None:
    """A sandbox that hangs, dies or talks garbage yields `error` results with the reason, and the run goes on."""
    script, reason = HOSTILE[behaviour]
    timeout = "1" if "within 1 s" in reason else "10"  # the hanging ones time out; the rest must not
    run = run_suite(
        "--nsc-namespaces",
        "uts",
        "--nsc-probe-timeout",
        timeout,
        f"{ROOT}/isolation_checks/uts.py",
        runtime=ScriptRuntime(script),
        audit=True,
    )
    # every result that reached the sandbox is an error (a check that needs no sandbox may skip: n/a)
    results = [r for r in run.report["results"] if r["outcome"] != "skipped"]
    assert results and {r["outcome"] for r in results} == {"error"}, run.output
    assert all(re.search(reason, r["reason"]) for r in results), [r["reason"] for r in results]
    assert run.verdicts()["uts"] == "error"
    assert run.report["host_audit"]["left"] == []


# -- bad input ------------------------------------------------------------------------------------

BAD_INPUT = [
    (["--nsc-namespaces", "uts,bogus"], "unknown namespace bogus"),
    (["--nsc-namespaces", ""], "--nsc-namespaces is empty"),
    (["--nsc-namespaces", ","], "--nsc-namespaces is empty"),
    (["--nsc-combinations", "declared"], "needs a runtime profile"),
    *(
        (
            ["--nsc-probe-timeout", value],
            "--nsc-probe-timeout must be a number of seconds greater than 0 and at most 3600",
        )
        for value in ("0", "-1", "nan", "inf", "1e309", "3601")
    ),
    (["--nsc-probe-timeout", "soon"], "--nsc-probe-timeout needs a number of seconds, not 'soon'"),
    (["--nsc-runtime", "no-such-runtime"], "no-such-runtime"),
    (["--nsc-baseline", "/nonexistent/conformance.json"], "--nsc-baseline /nonexistent/conformance.json: no such file"),
    (["--nsc-baseline=/proc"], "--nsc-baseline /proc: a directory, not a file"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) or "empty" for a, _ in BAD_INPUT])
def test_bad_input_is_a_clear_usage_error(args: list[str], message: str, tmp_path: Path) -> None:
    """Each bad option stops the run before anything starts, with a message naming the problem."""
    done = run_pytest(*args, "--nsc-report-dir", str(tmp_path / "r"))
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert message in done.stderr
    assert not (tmp_path / "r").exists()


# -- determinism ----------------------------------------------------------------------------------


def test_serial_and_parallel_runs_agree(tmp_path: Path) -> None:
    """Repeated runs, serial and with -n 2, give identical outcomes for every result."""
    runs = {}
    for name, extra in (("serial1", []), ("serial2", []), ("xdist1", ["-n", "2"]), ("xdist2", ["-n", "2"])):
        done = run_pytest("--nsc-namespaces", "uts,pid,ipc", "--nsc-report-dir", str(tmp_path / name), *extra)
        assert done.returncode == 0, done.stdout[-3000:]
        runs[name] = outcomes(tmp_path / name)
    first = runs.pop("serial1")
    assert len(first) > 70
    for name, seen in runs.items():
        assert seen == first, name


def test_scratch_dirs_are_private_and_unpredictable() -> None:
    """Journaled before they are made, 0700, named with the run's id and the process's token."""
    record = journal.current()
    (a, first), (b, second) = make_scratch_dir("t"), make_scratch_dir("t")
    try:
        assert os.stat(a).st_mode & 0o777 == 0o700
        assert a != b and f"{record.run}-{journal.token()}" in Path(a).name
        assert first.identity == {"dev": os.stat(a).st_dev, "ino": os.stat(a).st_ino, **identity.birth(a)}
    finally:
        for path, entry in ((a, first), (b, second)):
            os.rmdir(path)
            record.removed(entry)


class StopProbeAtSecondRequest:
    """Stops (SIGSTOP) the probe of ipc.sysv_objects_hidden_from_host before its second request: that request
    times out, and the check's cleanup request, in its `finally`, then finds the sandbox closed."""

    def pytest_runtest_call(self, item: pytest.Item) -> None:
        sandbox = item.funcargs.get("sandbox")
        if sandbox is None or "sysv_objects_hidden_from_host" not in item.nodeid:
            return
        real, sent = sandbox.probe, []

        def probe(op: str, **args: object) -> object:
            sent.append(op)
            if len(sent) == 2:
                os.kill(sandbox.pid, signal.SIGSTOP)
            return real(op, **args)

        sandbox.probe = probe


def test_an_error_keeps_its_first_cause_and_shows_as_an_error(run_suite) -> None:
    """1. a probe stopped mid-check, whose cleanup request then fails; 2. EXPECT the result `error` for the
    timeout, the cleanup's failure in its evidence; the terminal showing it as an error (E, "1 error"), not a
    failure; the exit status 1"""
    run = run_suite(
        "--nsc-namespaces",
        "ipc",
        "--nsc-probe-timeout",
        "1",
        "-k",
        "sysv_objects_hidden_from_host",
        f"{ROOT}/isolation_checks/ipc.py",
        plugins=(StopProbeAtSecondRequest(),),
    )
    (result,) = [r for r in run.report["results"] if r["outcome"] != "skipped"]
    assert result["outcome"] == "error" and "did not answer within 1 s" in result["reason"], result
    assert any("the sandbox is closed" in text for text in result["evidence"]["raised after the error"]), result
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    assert re.search(r"\b1 error\b", run.output) and "failed" not in run.output.splitlines()[-1], run.output[-2000:]
    assert "ipc.py E" in run.output or "ipc.py::test_sysv_objects_hidden_from_host[ipc] ERROR" in run.output
