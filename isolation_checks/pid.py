"""PID namespace: the sandbox's own init, its own /proc, and no reach into the host's processes."""

from __future__ import annotations

import errno
import os
import select
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psutil
import pytest

from nsconform.escapes import (
    ATTACH_PREMISE,
    HANDLES,
    NAMESPACE_FILES,
    expect_fs_instances_own,
    expect_no_foreign_namespace_file,
    expect_no_inherited_handle,
)
from nsconform.guarantees import Verdict, guarantee
from nsconform.host.observe import Host
from nsconform.sandbox.errors import SandboxError
from nsconform.sandbox.sandbox import Sandbox, pid_in_namespace


@guarantee("pid", "any", references=["pid_namespaces(7)"])
def test_namespace_identity(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox has a PID namespace of its own exactly when PID is isolated."""
    verdict.identity("pid", sandbox, host)


@guarantee("pid", "isolated")
def test_init_is_pid_1(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox's first process sees itself as PID 1 with parent 0."""
    # 1. ASSERT an own PID namespace (a PID 1 seen in the host's would be the host's init)
    # 2. the probe is the first process: EXPECT it is PID 1 with parent 0 inside
    # 3. a runtime's own init is (bwrap, podman --init): ASSERT the host finds it among the probe's ancestors
    verdict.require_own_namespace("pid", sandbox, host)
    ident = sandbox.probe("identity")
    if ident["pid"] != 1:
        init = sandbox.namespace_init()
        verdict.require(
            init is not None,
            "the sandbox's first process is not PID 1 inside",
            pid_inside=ident["pid"],
            ppid_inside=ident["ppid"],
        )
        verdict.note(runtime_init_on_host=init and init.pid)
        return
    verdict.expect(ident["ppid"] == 0, "the sandbox's init has a parent inside", ppid_inside=ident["ppid"])


@guarantee("pid", "isolated", needs=["mnt"], host_view="it counts the sandbox's processes on the host")
def test_proc_shows_only_sandbox(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """/proc inside lists the sandbox's processes only, not the host's."""
    # 1. /proc/self inside must name the probe's pid in its own namespace (a stale host /proc names the host pid)
    # 2. /proc inside must list as many processes as the host finds in the sandbox's PID namespace
    ident = sandbox.probe("identity")
    verdict.expect(
        ident["proc_self"] == str(ident["pid"]),
        "/proc inside is not the sandbox's own: /proc/self names another pid",
        proc_self=ident["proc_self"],
        pid_inside=ident["pid"],
    )
    listed = sandbox.probe("pids")
    members = sandbox.ns_members()
    verdict.expect(
        len(listed) == len(members),
        "/proc inside lists processes that are not in the sandbox",
        pids_listed_inside=listed,
        sandbox_processes_on_host=[p.pid for p in members],
    )


@guarantee("pid", "isolated")
def test_host_pid_unreachable(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """Signalling a host PID from inside fails with ESRCH (signal 0: nothing is ever delivered)."""
    target = os.getpid()  # this harness process, on the host, outside every sandbox
    result = sandbox.probe("signal", pid=target, sig=0)
    verdict.expect(
        result == errno.ESRCH,
        "a host process can be signalled from inside",
        host_pid=target,
        kill_result=errno.errorcode.get(result, result),
    )


@guarantee(
    "pid",
    "isolated",
    attach_unsafe="the orphan it makes is adopted by the target's init, which may never reap it (a zombie left "
    "in the target)",
)
def test_orphan_reparented_to_init(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """A process orphaned inside the sandbox is adopted by the sandbox's init (PID 1)."""
    verdict.require_own_namespace("pid", sandbox, host)
    seen = sandbox.probe("orphan_parent")
    verdict.expect(
        seen["ppid"] == 1, "an orphan inside was adopted by a process other than the sandbox's init", orphan=seen
    )


@guarantee("pid", "isolated", attach_unsafe="it sends SIGKILL to the PID namespace's init, the target's own")
def test_init_survives_sigkill_from_inside(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """SIGKILL sent to PID 1 from inside the sandbox does not kill the sandbox's init."""
    # 1. ASSERT an own PID namespace (else PID 1 would be the host's init); 2. a child kills PID 1
    # 3. the probe, that PID 1, still answers
    verdict.require_own_namespace("pid", sandbox, host)
    if sandbox.probe("identity")["pid"] != 1:
        pytest.skip("the probe is not its namespace's init (the runtime's own init is PID 1): not ours to kill")
    try:
        seen = sandbox.probe("kill_init_from_inside")
        alive = sandbox.probe("identity")["pid"] == 1
    except SandboxError as e:  # the probe, that init, is gone: the sandbox ended with it
        seen, alive = {"sandbox_ended": str(e)}, False
    verdict.expect(
        alive and (sandbox.pid is None or psutil.pid_exists(sandbox.pid)),
        "the sandbox's init died of a SIGKILL sent from inside",
        kill_result=seen,
    )


@guarantee(
    "pid",
    "isolated",
    attach_unsafe="it kills the PID namespace's init, the target's own",
    ends_sandbox=True,
    host_view="it watches the sandbox's processes die from the host",
)
def test_no_survivor_after_init_exit(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """When the init of the sandbox's PID namespace dies, every process of the namespace has died with it."""
    # 1. ASSERT an own PID namespace; two children inside that would block forever
    # 2. the host takes a pidfd of every process of the namespace, then SIGKILLs its init (the probe, or the
    #    runtime's own: lxc-init, firejail, bwrap ...), whatever the runtime would do at its end
    # 3. the kernel reaps the init only once the rest of its namespace is gone: EXPECT, the moment the init's
    #    pidfd says it exited, every other pidfd to say so too (nothing is waited for but the kill itself)
    # 4. close the sandbox, whatever its runtime does after its init's end
    verdict.require_own_namespace("pid", sandbox, host)
    sandbox.probe("spawn_sleepers", count=2)
    with pidfds(sandbox.ns_members()) as members:
        own = (sandbox.ns_inode("pid"), 1)
        init = next((fd for fd, proc in members.items() if pid_in_namespace(proc.pid) == own), None)
        verdict.require(init is not None, "the host finds no PID 1 in the sandbox's PID namespace")
        assert init is not None
        signal.pidfd_send_signal(init, signal.SIGKILL)
        if not select.select([init], [], [], sandbox.timeout)[0]:
            raise SandboxError(
                f"the sandbox's init (host pid {members[init].pid}) did not die of SIGKILL within {sandbox.timeout:g} s"
            )
        ended = set(select.select(list(members), [], [], 0)[0])
        survivors = [proc for fd, proc in members.items() if fd not in ended]
        try:
            verdict.expect(
                not survivors,
                "processes of the sandbox's PID namespace outlived its init",
                init_on_host=members[init].pid,
                namespace_processes=sorted(p.pid for p in members.values()),
                survivors=[p.pid for p in survivors],
            )
        finally:
            for proc in survivors:
                with suppress(psutil.Error):
                    proc.kill()
            sandbox.close()  # whatever its runtime still does: the next check of the combination gets a new one


@contextmanager
def pidfds(processes: list[psutil.Process]) -> Iterator[dict[int, psutil.Process]]:
    """A pidfd of each of `processes` still running (a pidfd names its process, never a later one's pid)."""
    held: dict[int, psutil.Process] = {}
    try:
        for proc in processes:
            with suppress(OSError):
                fd = os.pidfd_open(proc.pid)
                held[fd] = proc
                if not proc.is_running():  # the pid was another process's by the time the pidfd was taken
                    del held[fd]
                    os.close(fd)
        yield held
    finally:
        for fd in held:
            os.close(fd)


@guarantee("pid", "shared", host_view="it compares the probe's pid inside with its pid on the host")
def test_host_pids_visible(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With PID shared, the sandbox sees host processes under their host PIDs."""
    target = os.getpid()
    listed = sandbox.probe("pids")
    result = sandbox.probe("signal", pid=target, sig=0)
    verdict.expect(
        target in listed, "a host process is missing from /proc inside", host_pid=target, pids_listed_inside=listed
    )
    verdict.expect(
        result != errno.ESRCH,
        "a host process does not exist as seen from inside",
        kill_result=errno.errorcode.get(result, result),
    )
    ident = sandbox.probe("identity")
    verdict.expect(
        ident["pid"] == sandbox.pid,
        "the probe's pid inside is not its host pid",
        pid_inside=ident["pid"],
        pid_on_host=sandbox.pid,
    )


@guarantee("pid", "isolated", attach_unsafe=ATTACH_PREMISE, references=(*HANDLES, "pidfd_getfd(2)"))
def test_no_inherited_handle(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No fd the sandbox's first process inherited reaches the host's processes: no /proc of the host's PID
    namespace, no pidfd of a host process that pidfd_getfd accepts (the kernel refuses setns into an ancestor)."""
    expect_no_inherited_handle("pid", sandbox, host, verdict)


@guarantee("pid", "isolated", needs=["mnt"], references=("pid_namespaces(7)", "proc(5)"))
def test_fs_instances_own(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """Where PID and mount are isolated, every proc filesystem mounted inside, wherever it is mounted, is one of the
    sandbox's own PID namespace (its `self` names the probe as the sandbox numbers it), not another's."""
    expect_fs_instances_own("pid", sandbox, host, verdict)


@guarantee("pid", "isolated", needs=["mnt"], references=NAMESPACE_FILES)
def test_no_foreign_namespace_file(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No namespace file in the sandbox's mount table (a bound /proc/PID/ns/pid, a volume of namespace files) opens
    another PID namespace that setns accepts (under --nsc-attach: that the target itself could join)."""
    expect_no_foreign_namespace_file("pid", sandbox, host, verdict)
