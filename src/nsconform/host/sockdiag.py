"""The host's listening Unix sockets, from the kernel's sock_diag (UNIX_DIAG with UDIAG_SHOW_VFS), never by a connect.

sock_diag answers for the network namespace its netlink socket was made in: run by the harness, the host's.
A listener bound to a path carries that file's device and inode (UNIX_DIAG_VFS), which is how a socket file
seen inside a sandbox is matched to the listener behind it without ever connecting (a connect can start a
socket-activated daemon). The kernel reports the device in its internal form (major << 20 | minor).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from nsconform.host.observe import make_scratch_dir
from nsconform.hygiene import journal

TCP_LISTEN = 10  # a listening socket's state (include/net/tcp_states.h), the same for Unix sockets
KERNEL_MINOR_BITS = 20


@dataclass(frozen=True)
class Listener:
    """A listening Unix socket of the host's network namespace, bound to a file."""

    inode: int  # the socket's own inode (socket:[N] in /proc/PID/fd)
    path: str  # the name it was bound to, as its binder gave it
    device: int  # the socket file's device, as stat(2) gives it
    file_inode: int  # the socket file's inode


def user_device(kernel_dev: int) -> int:
    """A device number as stat(2) gives it, from the kernel's internal form."""
    return os.makedev(kernel_dev >> KERNEL_MINOR_BITS, kernel_dev & ((1 << KERNEL_MINOR_BITS) - 1))


def listening() -> dict[tuple[int, int], Listener]:
    """(device, inode) of its file -> the listener, for every listening Unix socket bound to a path."""
    from pyroute2.netlink.diag import UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, DiagSocket

    found: dict[tuple[int, int], Listener] = {}
    with DiagSocket() as diag:
        diag.bind()
        answers = diag.get_sock_stats(
            family=socket.AF_UNIX, states=1 << TCP_LISTEN, show=UDIAG_SHOW_NAME | UDIAG_SHOW_VFS
        )
    for msg in answers:
        vfs = msg.get_attr("UNIX_DIAG_VFS")
        if vfs is None:  # abstract or unnamed: no file to reach it by
            continue
        listener = Listener(
            inode=msg["udiag_ino"],
            path=msg.get_attr("UNIX_DIAG_NAME") or "",
            device=user_device(vfs["udiag_vfs_dev"]),
            file_inode=vfs["udiag_vfs_ino"],
        )
        found[(listener.device, listener.file_inode)] = listener
    return found


def holders(socket_inode: int) -> list[int]:
    """The host pids that hold socket `socket_inode` open (their /proc/PID/fd links name it)."""
    wanted = f"socket:[{socket_inode}]"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
            if any(os.readlink(f"/proc/{name}/fd/{fd}") == wanted for fd in fds):
                found.append(int(name))
        except OSError:  # gone meanwhile, or an fd closed between the listing and the readlink
            continue
    return sorted(found)


@contextmanager
def canary() -> Iterator[str]:
    """A listening Unix socket of the harness's own, at a file in a scratch dir of the host's temp dir (not the
    worker's volume, whose paths outgrow a socket address's 108 bytes), for the block: the listener sock_diag must
    show (else it cannot be trusted to show any), and which no sandbox should reach. Nothing ever connects to it;
    it is closed and its file removed with its scratch dir."""
    parent, entry = make_scratch_dir("canary")
    try:
        os.chmod(parent, 0o711)
        path = os.path.join(parent, "listening")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(path)
            sock.listen(1)
            yield path
    finally:
        shutil.rmtree(parent)
        journal.current().removed(entry)
