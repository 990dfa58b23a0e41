"""The fork server: its sandboxes are the same as started ones, and nothing of it outlives its session."""

from __future__ import annotations

import os
import signal

import psutil

from nsconform.hygiene import journal
from nsconform.sandbox import forkserver
from nsconform.sandbox.native import NativeRuntime
from nsconform.sandbox.sandbox import Sandbox, await_exit

SIX = frozenset({"uts", "pid", "mnt", "ipc", "net", "user"})


def tagged_processes() -> list[psutil.Process]:
    """This process's harness processes: an argument of theirs carries its token (nsconform.hygiene.naming)."""
    token = journal.token()
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(token in arg for arg in p.info["cmdline"] or []) and p.pid != os.getpid()
    ]


def test_forked_sandbox_is_the_started_one() -> None:
    """1. a sandbox forked by the server and one started as its own interpreter, same combination
    2. EXPECT the same view inside (identity, maps, namespaces isolated from the host) and the forked
    launcher a child of the server, in a session of its own"""
    started = Sandbox(NativeRuntime().launch(SIX), 10)
    with forkserver.serving(10) as server, Sandbox(NativeRuntime().launch(SIX), 10) as forked:
        assert isinstance(forked.process, forkserver.Forked)
        assert server.process is not None
        assert psutil.Process(forked.process.pid).ppid() == server.process.pid
        assert os.getsid(forked.process.pid) == forked.process.pid
        for op in ("identity", "id_maps", "uts"):
            assert forked.probe(op) == started.probe(op), op
        for ns in SIX:
            assert forked.ns_inode(ns) not in (None, started.ns_inode(ns)), ns
    started.close()
    assert forked.process.returncode is not None


def test_nothing_of_the_server_outlives_its_session() -> None:
    """1. a session's server with two sandboxes, one closed, one left open; 2. the session ends
    3. EXPECT the server and every process it forked gone, every child reaped by the server"""
    with forkserver.serving(10) as server:
        closed = Sandbox(NativeRuntime().launch(SIX), 10)
        closed.close()
        left = Sandbox(NativeRuntime().launch(frozenset({"pid"})), 10)
        assert server.process is not None
        processes = [psutil.Process(pid) for pid in (server.process.pid, left.process.pid, left.pid)]
    assert server.process is None
    assert not await_exit(processes, 10)  # the server waited for; its children killed with it (PDEATHSIG)
    left.close()
    assert not tagged_processes()


def test_sandboxes_die_with_a_killed_server() -> None:
    """1. a sandbox of the server; 2. SIGKILL the server (as when its worker is killed)
    3. EXPECT the sandbox's processes gone (PR_SET_PDEATHSIG) and its close quiet, status SIGKILL
    4. EXPECT the next sandbox from a server started afresh"""
    with forkserver.serving(10) as server:
        box = Sandbox(NativeRuntime().launch(SIX), 10)
        inside = [psutil.Process(box.process.pid), psutil.Process(box.pid)]
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        assert not await_exit(inside, 10)
        box.close()
        assert box.process.returncode == -signal.SIGKILL
        with Sandbox(NativeRuntime().launch(SIX), 10) as again:
            assert again.probe("identity")["pid"] == 1
            assert server.generation == 2
    assert not tagged_processes()
