"""Unix socket files reachable inside, matched by (device, inode) to the host's listeners (nsconform.host.sockdiag).

A socket file that leads to a listener outside the sandbox is a way out whatever the namespaces: a bound-in
docker.sock is root on the host. The match is by the file's identity, never by a connect, which could start a
socket-activated daemon. The host's sock_diag lists the listeners of the host's network namespace only: one in
a third namespace (another container's) is not seen.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nsconform.host.sockdiag import Listener

USUAL = ("/run", "/var/run", "/tmp")  # where daemons put their sockets
# Filesystems that hold no socket file a host daemon binds to, and whose walk would be long (proc) or pointless.
NOT_WALKED = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "bpf", "debugfs", "tracefs"})


def roots(mount_table: Iterable[dict]) -> list[str]:
    """Where socket files are looked for: every mount point but the root and pseudo filesystems (a bind of a
    host socket or a host directory is one), and the usual directories."""
    points = [m["point"] for m in mount_table if m["point"] != "/" and m["fstype"] not in NOT_WALKED]
    return list(dict.fromkeys([*points, *USUAL]))


@dataclass(frozen=True)
class Match:
    """A socket file inside that is a host listener's."""

    path: str  # inside
    listener: Listener
    holders: list[int]  # host pids holding the listening socket
    outside: bool  # whether the listener lives outside the sandbox
    declared: bool  # whether the runtime declares this path reachable

    @property
    def violates(self) -> bool:
        return self.outside and not self.declared

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "listener": self.listener.path,
            "socket_inode": self.listener.inode,
            "holders": self.holders,
            "outside": self.outside,
            "declared": self.declared,
        }


def match(
    found: Iterable[list],
    listeners: dict[tuple[int, int], Listener],
    holders: Callable[[int], list[int]],
    inside: Callable[[int], bool],
    own_netns: bool,
    declared: Iterable[str],
) -> list[Match]:
    """The socket files `found` inside ([path, device, inode]) that are host listeners'. A listener lives
    outside the sandbox when the sandbox has a network namespace of its own (the host's sock_diag lists none
    of the sandbox's), else when a process outside the sandbox (`inside(pid)` false) holds it."""
    declared = list(declared)
    matches = []
    for path, device, inode in found:
        listener = listeners.get((device, inode))
        if listener is None:
            continue
        pids = holders(listener.inode)
        outside = own_netns or not pids or not all(inside(pid) for pid in pids)
        is_declared = any(fnmatch.fnmatchcase(path, pattern) for pattern in declared)
        matches.append(Match(path, listener, pids, outside, is_declared))
    return matches
