"""The host's side of every comparison: the probe's own observations, taken in the harness's namespaces.

Only observations run directly. What a check must create on the host (only ever to show an
isolated namespace hides it) goes through a context manager that removes it again, is recorded in
the process's journal before it is made (nsconform.hygiene.journal), so that a killed run's
leftover is reaped, and carries a name from nsconform.hygiene.naming.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nsconform.hygiene import identity, journal, naming, objects
from nsconform.inside import probe

OBSERVATIONS = frozenset(
    {
        "ns_inodes",
        "identity",
        "uts",
        "pids",
        "signal",
        "sysvipc",
        "dev_shm",
        "mountinfo",
        "id_maps",
        "mq_exists",
        "file_stat",
    }
    | {"links", "sysctl", "cgroups", "clocks", "timens_offsets"}
)


_volumes: list[str] = []  # the worker's volume while it exists (nsconform.host.mounts.mount_scratch_for)


@contextmanager
def volume() -> Iterator[str]:
    """The worker's volume for the block: a directory (0711) under the temp dir that every scratch dir of a
    check goes under, so that a runtime with a root of its own can bind it at the same path inside
    (a profile's {volume}) and the check's paths mean the same on both sides."""
    path, entry = make_scratch_dir("volume")
    os.chmod(path, 0o711)
    _volumes.append(path)
    try:
        yield path
    finally:
        _volumes.remove(path)
        shutil.rmtree(path)
        journal.current().removed(entry)


def current_volume() -> str | None:
    return _volumes[-1] if _volumes else None


def not_inside(path: str) -> str:
    """Why a check skips when the harness's scratch path `path` is not in the sandbox."""
    return (
        f"the harness's scratch path {path} is not inside the sandbox: its root (or /tmp) is its own, and its "
        "runtime's profile brings no {volume} in"
    )


@contextmanager
def scratch_dir(kind: str, *, owner: tuple[int, int] | None = None, mode: int = 0o700) -> Iterator[str]:
    """A new directory of nsconform.hygiene.naming in the worker's volume (else the temp dir), given to `owner`
    (uid, gid) with `mode`.

    Removed with everything in it when the block ends. Root inside a sandbox may map to a host
    uid that needs `owner` (to write here) or a mode with search permission (to reach a path below).
    """
    path, entry = make_scratch_dir(kind, current_volume())
    try:
        if owner is not None:
            os.chown(path, *owner)
        os.chmod(path, mode)
        yield path
    finally:
        shutil.rmtree(path)
        journal.current().removed(entry)


def make_scratch_dir(kind: str, parent: str | None = None) -> tuple[str, journal.Entry]:
    """A new 0700 directory with an unpredictable name under `parent` (by default the temp dir), journaled; the
    caller removes it and records that (`journal.current().removed(entry)`)."""
    record = journal.current()
    path = naming.scratch_path(kind, parent)
    with record.holding("path", path) as entry:
        os.mkdir(path, 0o700)
    record.made_path(entry)
    return path, entry


@dataclass
class Listener:
    """A host listener's address, and what each connection to it sent (in order of arrival)."""

    address: str
    port: int | None
    received: list[str] = field(default_factory=list)


class Host:
    """Observations of the host, with the same names and results as the sandbox's probe."""

    def probe(self, op: str, **args: Any) -> Any:
        if op not in OBSERVATIONS:
            raise ValueError(f"{op} is not an observation: the harness never changes the host with it")
        return probe.OPS[op](**args)

    def ns_inode(self, ns: str) -> tuple[int, int] | None:
        value = probe.ns_inodes().get(ns)
        return tuple(value) if value else None  # type: ignore[return-value]

    scratch_dir = staticmethod(scratch_dir)

    @contextmanager
    def private_file(self, kind: str) -> Iterator[str]:
        """A 0600 file of the harness's user (root, in a rootful run) in a scratch dir anyone may search (0711)."""
        with scratch_dir(kind, mode=0o711) as parent:
            path = os.path.join(parent, "secret")
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.write(fd, b"nsconform: only the harness's user may read this\n")
            finally:
                os.close(fd)
            yield path

    @contextmanager
    def ipc_object(self, kind: str, key: int) -> Iterator[int]:
        """A SysV object on the host for the duration of the block."""
        with journal.current().for_block(
            "sysv",
            f"{kind} {key:#x}",
            lambda: probe.ipc_create(kind, key),
            lambda ident: probe.ipc_remove(kind, ident),
            lambda ident: objects.sysv_identity(kind, key, ident),
            ipc=kind,
            key=key,
        ) as ident:
            yield ident

    @contextmanager
    def message_queue(self, name: str) -> Iterator[str]:
        """A POSIX message queue on the host for the duration of the block."""
        with journal.current().for_block(
            "mqueue",
            name,
            lambda: probe.mq_create(name),
            lambda _: probe.mq_remove(name),
            lambda _: {"ino": identity.mqueue_inode(name)},
        ):
            yield name

    @contextmanager
    def shm_file(self, name: str) -> Iterator[str]:
        """A POSIX shared-memory object (a file in the host's /dev/shm) for the duration of the block."""
        path = f"/dev/shm/{name}"
        with journal.current().for_block(
            "path",
            path,
            lambda: probe.shm_create(name),
            lambda _: probe.shm_remove(name),
            lambda _: identity.path_identity(path),
            durable=False,  # a memory filesystem: gone with the machine
        ):
            yield name

    @contextmanager
    def listener(self, address: str, port: int | None = 0, reply: str = "", timeout: float = 5.0) -> Iterator[Listener]:
        """A stream listener on the host for the duration of the block, answering every connection.

        TCP on `address`:`port` (port 0: a free one, see `.port`), or with port None a unix socket
        at `address` ('@name': abstract). A thread accepts each connection, records what it sent
        until it ended writing, and answers `reply`: whoever gets `reply` back reached this listener.
        """
        if port is None and not address.startswith("@"):
            raise ValueError(f"{address}: the host's unix listeners are abstract ('@name'); a path would leave a file")
        family, target = probe.socket_address(address, port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind(target)
            sock.listen(8)
            bound = Listener(address, sock.getsockname()[1] if port is not None else None)
            server = threading.Thread(target=answer, args=(sock, bound, reply, timeout), daemon=True)
            server.start()
            try:
                yield bound
            finally:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() with EINVAL: the thread ends
                server.join(timeout)
        finally:
            sock.close()


def answer(sock: socket.socket, listener: Listener, reply: str, timeout: float) -> None:
    """Serve `sock` until it is shut down: record each connection's message, send `reply`."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(timeout)
            try:
                listener.received.append(probe.read_all(conn).decode(errors="replace"))
                conn.sendall(reply.encode())
            except OSError:
                continue
