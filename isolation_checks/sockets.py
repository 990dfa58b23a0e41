"""Sockets: no Unix socket file reachable inside leads to a listener on the host (a bound-in docker.sock)."""

from __future__ import annotations

import os

import pytest

from nsconform.fixtures.shipped import Shipped, mount_table
from nsconform.guarantees import Verdict, guarantee
from nsconform.host import sockdiag
from nsconform.host.observe import Host
from nsconform.inside.areas import sockets as socket_probe
from nsconform.reach import sockets

DOCKER_SOCKET = "Docker documentation: Protect the Docker daemon socket"
UNIX_DIAG = "sock_diag(7): UNIX_DIAG with UDIAG_SHOW_VFS"


@guarantee(area="sockets", declares=("sockets",), rests_on="facts", references=(DOCKER_SOCKET, UNIX_DIAG))
def test_no_host_listener_reachable(shipped: Shipped, host: Host, verdict: Verdict) -> None:
    """No Unix socket file reachable inside (its bind mounts, /run, /var/run, /tmp) is that of a listener outside
    the sandbox, unless the runtime declares it: matched by device and inode against the host's listening sockets
    from sock_diag, never by a connect (which could start a socket-activated daemon)."""
    # 1. the harness listens on a socket file of its own in a scratch dir on the host (never connected to)
    # 2. the socket files reachable from the sandbox's root: lstat through /proc/PID/root, in a bounded walk
    # 3. the host's listening Unix sockets from sock_diag; ASSERT the harness's own among them
    # 4. EXPECT no socket file inside to be a listener's that lives outside the sandbox (its network namespace
    #    is not the host's, or a process outside holds it), unless declared
    pid = shipped.pid
    if pid is None:
        pytest.skip("the sandbox runs a kernel of its own: its socket files' device numbers are that kernel's")
    mounts = mount_table(shipped)
    with sockdiag.canary() as canary:
        roots = sockets.roots(mounts)
        found = socket_probe.socket_files(roots, root=f"/proc/{pid}/root")
        listeners = sockdiag.listening()
        verdict.require(
            any(listener.path == canary for listener in listeners.values()),
            "sock_diag does not show the harness's own listener: the host's listeners cannot be told",
            canary=canary,
        )
        own_netns = sandbox_ns(pid, "net") != host.ns_inode("net")
        pid_ns = sandbox_ns(pid, "pid")
        matches = sockets.match(
            found["sockets"],
            listeners,
            sockdiag.holders,
            lambda holder: pid_ns != host.ns_inode("pid") and sandbox_ns(holder, "pid") == pid_ns,
            own_netns,
            shipped.declared.sockets or (),
        )
    verdict.note(
        socket_files=len(found["sockets"]),
        host_listeners=len(listeners) - 1,
        roots=roots,
        cut_short=found["cut_short"],
        declared=[m.path for m in matches if m.declared],
    )
    bad = [m for m in matches if m.violates]
    verdict.expect(
        not bad,
        "a host listener's socket file is reachable inside: "
        + ", ".join(f"{m.path} (listener {m.listener.path}, held by {m.holders})" for m in bad[:5]),
        reachable=[m.to_json() for m in bad],
    )


def sandbox_ns(pid: int, ns: str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/{ns}")
    except OSError:
        return None
    return st.st_dev, st.st_ino
