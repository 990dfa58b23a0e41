"""Is a journal's object still on the host, and is it still the one recorded? Removing it, once it is.

For each kind of object a journal lists (nsconform.hygiene.journal), `present` looks the object up
by what the journal recorded: its identity once made (device and inode, SysV key, id and creator,
ifindex, mount id, process start time), or, for an intent whose identity never made it to the
file, by its exact name, taken for the journal's only if it bears that journal's identity (the
journal's token in the name, the journal's process as the SysV creator). What cannot be told
apart raises Unverifiable: it is reported and left alone. No name pattern decides anything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nsconform.hygiene.journal import Entry, process_start
from nsconform.inside import probe

CLEANUP_TIMEOUT = 60.0
CGROUPS = "/sys/fs/cgroup"
SYSV_CREATOR_COLUMN = {"shm": 4}  # /proc/sysvipc/shm names the creator's pid; sem and msg do not


class Unverifiable(Exception):
    """The object may be there, but nothing tells it for the journal's: left alone."""


@dataclass(frozen=True)
class Owner:
    """The process a journal belonged to, from the journal's header."""

    token: str
    pid: int
    uid: int

    @classmethod
    def of(cls, header: dict[str, Any]) -> Owner:
        return cls(token=header["token"], pid=header["pid"], uid=header["uid"])

    def named(self, name: str) -> bool:
        """The exact name was given by this owner's journal (nsconform.hygiene.naming puts its token in)."""
        return self.token in name


def present(entry: Entry, owner: Owner) -> bool:
    """Whether `entry`'s object is on the host and is the one recorded (Unverifiable: cannot tell)."""
    return KINDS[entry.kind][0](entry, owner)


def remove(entry: Entry, owner: Owner) -> None:
    """Remove `entry`'s object, which `present` just found."""
    KINDS[entry.kind][1](entry, owner)


def describe(entry: Entry) -> str:
    return f"{entry.kind} {entry.name}"


# -- paths: scratch directories, files in /dev/shm ---------------------------------------------


def path_present(entry: Entry, owner: Owner) -> bool:
    try:
        st = os.lstat(entry.name)
    except FileNotFoundError:
        return False
    if entry.identity is not None:
        return (st.st_dev, st.st_ino) == (entry.identity["dev"], entry.identity["ino"])
    if owner.named(os.path.basename(entry.name)) and st.st_uid == owner.uid:
        return True
    raise Unverifiable(f"{entry.name} was never recorded made, and does not bear its journal's token")


def remove_path(entry: Entry, owner: Owner) -> None:
    path = entry.name
    if os.path.isdir(path) and not os.path.islink(path):
        below = [row[2] for row in probe.mountinfo() if row[2] == path or row[2].startswith(path + "/")]
        for point in sorted(below, key=len, reverse=True):  # a leaky sandbox's mount in the harness's dir
            probe.unmount(point, detach=True)
        shutil.rmtree(path)
    else:
        os.unlink(path)


# -- mounts -------------------------------------------------------------------------------------


def topmost(point: str) -> list[Any] | None:
    """The mountinfo row of what is visible at `point`: the last mount made there."""
    rows = [row for row in probe.mountinfo() if row[2] == point]
    return rows[-1] if rows else None


def mount_present(entry: Entry, owner: Owner) -> bool:
    rows = [row for row in probe.mountinfo() if row[2] == entry.name]
    if entry.identity is not None:
        ours = [row for row in rows if row[0] == entry.identity["mount_id"]]
        if ours and rows[-1] is not ours[0]:
            raise Unverifiable(f"another mount covers {entry.name}")
        return bool(ours)
    if not rows:
        return False
    source = entry.details.get("source")
    if owner.named(entry.name) and (source is None or rows[-1][4] == source):
        return True
    raise Unverifiable(f"the mount at {entry.name} was never recorded made, and is not the one asked for")


def remove_mount(entry: Entry, owner: Owner) -> None:
    probe.unmount(entry.name, detach=True)  # with whatever is mounted below it


def mount_id(point: str) -> int:
    """The id of the mount just made at `point`."""
    row = topmost(point)
    if row is None:
        raise OSError(f"nothing is mounted at {point}")
    return int(row[0])


# -- SysV IPC objects -------------------------------------------------------------------------


def sysv_objects(kind: str) -> list[tuple[int, int, int | None]]:
    """(key, id, creator pid or None) of every SysV object of `kind` in this IPC namespace."""
    column = SYSV_CREATOR_COLUMN.get(kind)
    found = []
    with open(f"/proc/sysvipc/{kind}") as f:
        for row in f.read().splitlines()[1:]:
            cols = row.split()
            found.append((int(cols[0]), int(cols[1]), int(cols[column]) if column else None))
    return found


def creator(kind: str, key: int, ident: int) -> int | None:
    """The pid that made SysV object `ident` (shm only: the kernel shows no creator for sem and msg)."""
    return next((cpid for k, i, cpid in sysv_objects(kind) if (k, i) == (key, ident)), None)


def sysv_present(entry: Entry, owner: Owner) -> bool:
    kind, key = entry.details["ipc"], entry.details["key"]
    rows = [(i, cpid) for k, i, cpid in sysv_objects(kind) if k == key]
    if entry.identity is not None:
        return (entry.identity["id"], entry.identity["cpid"]) in rows
    if not rows:
        return False
    if rows[0][1] == owner.pid:
        entry.identity = {"id": rows[0][0], "cpid": owner.pid}
        return True
    raise Unverifiable(f"SysV {kind} key {key:#x} was never recorded made, and the kernel names no creator of it")


def remove_sysv(entry: Entry, owner: Owner) -> None:
    assert entry.identity is not None
    probe.ipc_remove(entry.details["ipc"], entry.identity["id"])


# -- POSIX message queues -----------------------------------------------------------------------


def mqueue_present(entry: Entry, owner: Owner) -> bool:
    try:
        exists = probe.mq_exists(entry.name)
    except OSError as e:
        raise Unverifiable(f"message queue {entry.name}: {e.strerror}") from None
    if exists and not owner.named(entry.name):
        raise Unverifiable(f"message queue {entry.name} does not bear its journal's token")
    return exists


def remove_mqueue(entry: Entry, owner: Owner) -> None:
    probe.mq_remove(entry.name)


# -- network links ------------------------------------------------------------------------------


def link_present(entry: Entry, owner: Owner) -> bool:
    try:
        index = socket.if_nametoindex(entry.name)
    except OSError:
        return False
    if entry.identity is not None:
        return index == entry.identity["ifindex"]
    if owner.named(entry.name):
        entry.identity = {"ifindex": index}
        return True
    raise Unverifiable(f"link {entry.name} does not bear its journal's token")


def remove_link(entry: Entry, owner: Owner) -> None:
    from pyroute2 import IPRoute  # slow to import: only where a link is to be removed

    assert entry.identity is not None
    with IPRoute() as ipr:
        ipr.link("del", index=entry.identity["ifindex"])


# -- processes ----------------------------------------------------------------------------------


def with_argument(name: str) -> list[int]:
    """Processes one of whose arguments is exactly `name`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            if name.encode() in f.read().split(b"\0"):
                found.append(int(pid))
    return found


def zombie(pid: int) -> bool:
    """Whether process `pid` has exited and waits for its parent to reap it (no harm left in it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def process_present(entry: Entry, owner: Owner) -> bool:
    if entry.identity is not None:
        pid = entry.identity["pid"]
        return process_start(pid) == entry.identity["start"] and not zombie(pid)
    if not entry.name or not owner.named(entry.name):
        raise Unverifiable(f"a process was never recorded started, and has no name of its journal ({entry.name!r})")
    pids = [pid for pid in with_argument(entry.name) if pid != os.getpid() and not zombie(pid)]
    if pids:
        entry.identity = {"pid": pids[0], "start": process_start(pids[0])}
    return bool(pids)


def remove_process(entry: Entry, owner: Owner) -> None:
    assert entry.identity is not None
    fd = os.pidfd_open(entry.identity["pid"])
    try:
        if process_start(entry.identity["pid"]) == entry.identity["start"]:  # still it, the pidfd holding it
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        os.close(fd)


# -- containers (a runtime's, made for the harness by the id it was given) ----------------------


def container_present(entry: Entry, owner: Owner) -> bool:
    if not owner.named(entry.name):
        raise Unverifiable(f"container {entry.name} does not bear its journal's token")
    return True  # only the runtime knows: its cleanup command is run for the exact id, harmless if none


def remove_container(entry: Entry, owner: Owner) -> None:
    clean_container(entry)


def clean_container(entry: Entry) -> None:
    """The runtime's cleanup command for the container's exact id, then the empty cgroups named by that id
    (a runtime's cgroupfs driver names a container's cgroup after it; rmdir takes only an empty one)."""
    run_cleanup(entry.details["cleanup"])
    for top, dirs, _ in os.walk(CGROUPS, topdown=False):
        if entry.name in dirs:
            with contextlib.suppress(OSError):  # busy: processes of it live on, for the audit to report
                os.rmdir(os.path.join(top, entry.name))


def run_cleanup(argv: list[str]) -> None:
    """A runtime's cleanup command, run to its end; that it found nothing left is no error."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=CLEANUP_TIMEOUT,
            check=False,
            cwd="/",
        )


Check = Callable[[Entry, Owner], bool]
Remove = Callable[[Entry, Owner], None]
KINDS: dict[str, tuple[Check, Remove]] = {
    "process": (process_present, remove_process),
    "container": (container_present, remove_container),
    "mount": (mount_present, remove_mount),
    "sysv": (sysv_present, remove_sysv),
    "mqueue": (mqueue_present, remove_mqueue),
    "link": (link_present, remove_link),
    "path": (path_present, remove_path),
}
