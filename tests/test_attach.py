"""--nsc-attach PID: the verdicts of the same isolation launched, nothing left in the target, clear errors."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from nsconform.guarantees import NOTHING
from nsconform.hygiene import journal
from nsconform.namespaces import DEFAULT
from nsconform.report.results import Result, summarize
from nsconform.sandbox.attach import AttachRuntime, Target
from nsconform.sandbox.native import NativeRuntime
from nsconform.sandbox.sandbox import Sandbox, SandboxError
from tests.conftest import ROOT, SuiteRun
from tests.runtime_profiles import unshare_fixed

# the unshare targets copy the host's mount table; their root could join a namespace file bound there meanwhile
pytestmark = pytest.mark.usefixtures("stable_host_mounts")

CHECKS = str(ROOT / "isolation_checks")
UNSHARE_FLAGS = ["--uts", "--ipc", "--net", "--pid", "--mount", "--mount-proc"]
CLAIMS = ["uts", "ipc", "net", "pid", "mnt"]


@pytest.fixture
def unshare_target() -> Iterator[int]:
    """A live workload: `sleep` as PID 1 of new UTS, IPC, network, PID and mount namespaces (killed after)."""
    # the shell is the namespace's init; it says its pid once it runs there, then becomes sleep
    runner = subprocess.Popen(
        ["unshare", "--fork", "--kill-child", *UNSHARE_FLAGS, "--", "sh", "-c", "echo; exec sleep infinity >/dev/null"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert runner.stdout is not None
    runner.stdout.readline()
    runner.stdout.close()
    init = next(p for p in psutil.Process(runner.pid).children() if p.name() in ("sh", "sleep"))
    try:
        yield init.pid
    finally:
        runner.kill()
        runner.wait()
        psutil.wait_procs([init], timeout=10)


def nsenter(pid: int, flag: str, *argv: str) -> str:
    return subprocess.run(
        ["nsenter", "-t", str(pid), flag, "--", *argv], capture_output=True, text=True, check=True
    ).stdout


def pid_namespace_members(pid: int) -> list[int]:
    own = os.stat(f"/proc/{pid}/ns/pid").st_ino
    members = []
    for proc in psutil.process_iter():
        try:
            if os.stat(f"/proc/{proc.pid}/ns/pid").st_ino == own:
                members.append(proc.pid)
        except OSError:
            continue
    return sorted(members)


def not_others(point: str) -> bool:
    """A mount that is not another run's: parallel runs remove their scratch mount points from the host
    meanwhile, which a target's private copies of them show (as deleted); this run's stay in."""
    return journal.token() in point or "nsconform-" not in point


def target_state(pid: int) -> dict[str, Any]:
    """What a run could leave in the target, read by util-linux's nsenter and /proc, not by the harness."""
    return {
        "uts": nsenter(pid, "--uts", "cat", "/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname"),
        "sysvipc": nsenter(pid, "--ipc", "cat", "/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg"),
        # a private copy of a host mount whose point another program removed meanwhile shows as //deleted
        "mountinfo": [
            line.replace("//deleted", "")
            for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            if not_others(line)
        ],
        # the host's /dev/shm (unshare makes no private one), where parallel tests come and go: only this run's
        "dev_shm": sorted(name for name in os.listdir(f"/proc/{pid}/root/dev/shm") if journal.token() in name),
        "processes": pid_namespace_members(pid),
        "links": [
            line.split(":")[0].strip() for line in nsenter(pid, "--net", "cat", "/proc/net/dev").splitlines()[2:]
        ],
    }


def comparable(run: SuiteRun) -> dict[str, str]:
    """check -> outcome of every result that ran (passed or failed)."""
    return {r["check"]: r["outcome"] for r in run.report["results"] if r["outcome"] in ("passed", "failed")}


def require_unshare() -> None:
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode:
        pytest.skip("unshare(1) cannot make a PID namespace here")


def test_attach_gives_the_verdicts_of_the_same_isolation_launched(
    unshare_target: int, run_suite, tmp_path: Path
) -> None:
    """Attached to a live `unshare` workload, every namespace's verdict, and every check that runs, is what the
    same isolation launched through an unshare profile gets; the target is as it was before."""
    require_unshare()
    before = target_state(unshare_target)
    attached = run_suite("--nsc-attach", str(unshare_target), CHECKS)
    after = target_state(unshare_target)
    profile = tmp_path / "unshare-target.toml"
    profile.write_text(unshare_fixed(claims=CLAIMS, flags=UNSHARE_FLAGS, name="unshare-target"))
    launched = run_suite(f"--nsc-runtime={profile}", CHECKS)

    assert attached.report["runtime"]["attach"] == {"pid": unshare_target, "claimed_from": "inodes"}
    assert attached.report["runtime"]["isolates"] == sorted(CLAIMS)
    assert not [r for r in attached.report["results"] if r["outcome"] == "error"], attached.output
    assert attached.verdicts() == launched.verdicts()
    ran, reference = comparable(attached), comparable(launched)
    assert len(ran) >= 20
    assert {check: reference.get(check) for check in ran} == ran
    # what does not run attached says why: not on a live target, the harness's mounts are not in it, or the
    # target, made earlier, holds nothing of what a busy host's mount table gave the launched sandbox to examine
    for r in attached.report["results"]:
        if r["outcome"] == "skipped" and reference.get(r["check"]):
            why = ("--nsc-attach", "made before the harness made its mount points", NOTHING)
            assert any(reason in r["reason"] for reason in why), r
    assert after == before


def test_attach_with_a_profile_takes_its_claims(unshare_target: int, run_suite, tmp_path: Path) -> None:
    """With --nsc-runtime's profile, what it claims is checked: a claim the target does not keep is violated."""
    profile = tmp_path / "claims-user.toml"
    profile.write_text(unshare_fixed(claims=[*CLAIMS, "user"], flags=UNSHARE_FLAGS, name="claims-user"))
    run = run_suite(
        "--nsc-attach", str(unshare_target), f"--nsc-runtime={profile}", "--nsc-namespaces", "uts,user", CHECKS
    )
    assert run.report["runtime"]["attach"] == {"pid": unshare_target, "claimed_from": "profile"}
    assert run.verdicts() == {"uts": "conformant", "user": "violated"}
    assert run.outcomes("user.namespace_identity") == {"ipc+mnt+net+pid+user+uts": "failed"}


@pytest.fixture
def native_target() -> Iterator[Sandbox]:
    """A live native sandbox with every default namespace its own, user included (root maps to 100000)."""
    box = Sandbox(NativeRuntime().launch({"uts", "pid", "mnt", "ipc", "net", "user"}), timeout=10)
    try:
        yield box
    finally:
        box.close()


def inside_state(box: Sandbox) -> dict[str, Any]:
    state = {op: box.probe(op) for op in ("uts", "sysvipc", "dev_shm", "links", "pids")}
    return state | {"mountinfo": [row for row in box.probe("mountinfo") if not_others(row[2])]}


def test_attach_to_a_native_sandbox_with_a_user_namespace(native_target: Sandbox, run_suite) -> None:
    """Attached to a native sandbox's init, user namespace included, the verdicts are the native runtime's, and
    the target's own probe sees the same names, IPC objects, mounts, links and processes as before."""
    before = inside_state(native_target)
    attached = run_suite("--nsc-attach", str(native_target.pid), CHECKS)
    after = inside_state(native_target)
    launched = run_suite("--nsc-combinations", "singles", CHECKS)
    everything = ["ipc", "mnt", "net", "pid", "user", "uts"]
    assert attached.report["runtime"]["isolates"] == everything
    assert not [r for r in attached.report["results"] if r["outcome"] == "error"], attached.output
    # the native run's sandbox of the same combination (its others share namespaces with a busy host)
    same = [Result(**r) for r in launched.report["results"] if r["combination"] == everything]
    assert attached.verdicts() == {ns: entry["verdict"] for ns, entry in summarize(same, DEFAULT).items()}
    reference = {r.check: r.outcome for r in same}
    ran = comparable(attached)
    assert {"user.root_is_not_host_root", "user.no_capability_over_host", "user.file_owner_mapped"} <= set(ran)
    assert {check: reference.get(check) for check in ran} == ran
    assert after == before


def test_bad_pids_are_usage_errors(run_suite) -> None:
    """A pid that is no process, not a number, or the harness itself stops the run before anything starts."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    for value, message in (
        (str(pid_max + 1), "no such process"),
        ("0", "not a process id"),
        ("nginx", "not a process id"),
        (str(os.getpid()), "the harness itself"),
    ):
        run = run_suite("--nsc-attach", value, CHECKS)
        assert run.ret == pytest.ExitCode.USAGE_ERROR and message in run.output, (value, run.output[-2000:])
        assert not run.report
    with subprocess.Popen(["sleep", "infinity"]) as sleeper:
        run = run_suite("--nsc-attach", str(sleeper.pid), "--nsc-combinations", "all", CHECKS)
        sleeper.kill()
    assert run.ret == pytest.ExitCode.USAGE_ERROR and "use declared" in run.output


def test_a_zombie_target_is_refused_before_anything_is_written(run_suite, pytester: pytest.Pytester) -> None:
    """1. an earlier report in the report directory; 2. a child that has exited, not yet reaped (a zombie)
    3. --nsc-attach to it; 4. EXPECT a usage error saying it has exited, the earlier report byte for byte"""
    earlier = pytester.path / "reports" / "conformance.json"
    earlier.parent.mkdir()
    before = (ROOT / "tests" / "data" / "conformance.json").read_bytes()
    earlier.write_bytes(before)
    with subprocess.Popen(["true"]) as child:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited; left unreaped until the block ends
        run = run_suite("--nsc-attach", str(child.pid), CHECKS)
    assert run.ret == pytest.ExitCode.USAGE_ERROR and "has exited (a zombie" in run.output, run.output[-2000:]
    assert earlier.read_bytes() == before
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["conformance.json"]


def test_a_target_that_exits_mid_run_gives_errors_not_verdicts(unshare_target: int, run_suite) -> None:
    """The target ends after the first check: every later result is error (with the reason), none a verdict."""

    class EndTarget:
        """Kills the target after the first check passed, and waits until its PID namespace is empty."""

        def __init__(self) -> None:
            self.first = ""

        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            if not self.first and report.when == "call" and report.passed:
                self.first = report.nodeid
                members = [psutil.Process(pid) for pid in pid_namespace_members(unshare_target)]
                os.kill(unshare_target, signal.SIGKILL)
                assert not psutil.wait_procs(members, timeout=10)[1]

    ending = EndTarget()
    run = run_suite("--nsc-attach", str(unshare_target), CHECKS, plugins=(ending,))
    ran = {r["id"]: r for r in run.report["results"] if r["outcome"] != "skipped"}
    assert ran.pop(ending.first)["outcome"] == "passed"
    assert ran and all(r["outcome"] == "error" for r in ran.values()), [(r["id"], r["outcome"]) for r in ran.values()]
    assert any("has exited" in r["reason"] for r in ran.values())


def test_launch_refuses_a_target_whose_pid_was_reused(unshare_target: int) -> None:
    """A pid that now names another process (another start time) is no longer the target."""
    target = Target.find(unshare_target)
    runtime = AttachRuntime(target=dataclasses.replace(target, starttime=target.starttime + 1))
    with pytest.raises(SandboxError, match="pid now names another process"):
        runtime.launch(runtime.isolates)


@pytest.mark.parametrize("ns_files", [False, True], ids=["pidfd", "ns-files"])
def test_probe_joins_every_namespace_of_the_target(unshare_target: int, ns_files: bool) -> None:
    """Through a pidfd (all at once) or /proc/PID/ns/* (one by one), the probe is in each of the target's
    namespaces, inside its PID namespace, and closing it ends none of the target's processes."""
    target = Target.find(unshare_target)
    runtime = AttachRuntime(target=target, ns_files=ns_files)
    with Sandbox(runtime.launch(runtime.isolates), timeout=10) as box:
        assert {ns: box.ns_inode(ns) for ns in target.inodes} == target.inodes
        assert box.probe("identity")["pid"] != 1 and box.namespace_init().pid == unshare_target
    assert psutil.Process(unshare_target).is_running()
    assert pid_namespace_members(unshare_target) == [unshare_target]


@pytest.mark.parametrize("capable", [True, False], ids=["target-with-cap-sys-admin", "target-without"])
def test_attached_namespace_file_is_violated_only_where_the_target_could_join_it(capable: bool, run_suite) -> None:
    """A live workload with the host's UTS namespace file bound in its own mount namespace: the joined probe (the
    harness's capabilities) can join it either way, so the verdict rests on the target's own credentials: violated
    where it holds CAP_SYS_ADMIN over the host's user namespace, evidence where its bounding set lacks it."""
    require_unshare()
    drop = "" if capable else "setpriv --bounding-set -sys_admin "
    script = (
        f"mount -t tmpfs nsconform /mnt && touch /mnt/uts && mount --bind /proc/{os.getpid()}/ns/uts /mnt/uts && "
        f"echo && exec {drop}sleep infinity >/dev/null"
    )
    runner = subprocess.Popen(
        ["unshare", "--fork", "--kill-child", "--uts", "--mount", "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert runner.stdout is not None
    runner.stdout.readline()
    runner.stdout.close()
    target = psutil.Process(runner.pid).children()[0]
    try:
        run = run_suite("--nsc-attach", str(target.pid), "--nsc-namespaces", "uts", CHECKS)
    finally:
        runner.kill()
        runner.wait()
        psutil.wait_procs([target], timeout=10)
    [result] = [r for r in run.report["results"] if r["check"] == "uts.no_foreign_namespace_file"]
    assert result["outcome"] == ("failed" if capable else "passed"), run.output
    seen = result["evidence"]["usable" if capable else "refused"]
    assert "/mnt/uts is the host's uts namespace" in str(seen) and ("no CAP_SYS_ADMIN" in str(seen)) != capable, seen
    assert run.verdicts() == {"uts": "violated" if capable else "conformant"}
