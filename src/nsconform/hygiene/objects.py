"""Is a journal's object still on the host, and is it still the one recorded? Removing it, once it is.

For each kind of object a journal lists (nsconform.hygiene.journal), `present` looks the object up by
what the journal recorded once it was made, and takes it for the journal's only on an identity a new
object cannot have (nsconform.hygiene.identity): a path by device, inode and birth time or generation;
a mount by its unique id; a link by name, ifindex and the ifalias the harness gave it; a SysV object by
key, id, creator and creation time; a message queue by name and inode; a process by pid and start time.
An object found where the journal's is recorded but not proven its own raises Replaced (the journal's
is gone: reported, left alone); one that cannot be told apart (an intent whose identity never made it to
the file, a journal of an earlier version, a kernel without unique mount ids) raises Unverifiable:
reported and left alone, its journal kept. No name pattern decides anything.
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

from nsconform.hygiene import identity
from nsconform.hygiene.journal import Entry, process_start
from nsconform.inside import probe

CLEANUP_TIMEOUT = 60.0
CGROUPS = "/sys/fs/cgroup"


class Unverifiable(Exception):
    """The object may be there, but nothing tells it for the journal's: left alone."""


class Replaced(Exception):
    """Another object holds the journal's name or number: the journal's is gone, this one is left alone."""


def never_made(entry: Entry) -> Unverifiable:
    return Unverifiable(
        f"{entry.name} was never recorded made (its process died making it): what is there cannot be told for its own"
    )


def proven(entry: Entry, found: dict[str, Any], fields: tuple[str, ...], what: str) -> bool:
    """Whether `found` (the object now at the recorded name or number) has every field of the recorded identity
    in `fields` that the journal holds; Replaced if one differs, Unverifiable if the journal holds none."""
    made = entry.identity or {}
    recorded = [name for name in fields if made.get(name) is not None]
    if not recorded:
        raise Unverifiable(f"{what}: the journal records no {' or '.join(fields)} that would tell it from a later one")
    differ = [name for name in recorded if found.get(name) != made[name]]
    if differ:
        detail = ", ".join(f"{name} {found.get(name)} (recorded {made[name]})" for name in differ)
        raise Replaced(f"{what} is not the one recorded: {detail}")
    return True


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
    if entry.identity is None:
        raise never_made(entry)
    if (st.st_dev, st.st_ino) != (entry.identity.get("dev"), entry.identity.get("ino")):
        return False  # another inode: the journal's is gone
    return proven(entry, identity.birth(entry.name), identity.BIRTH, f"{entry.name} (inode {st.st_ino})")


def remove_path(entry: Entry, owner: Owner) -> None:
    """Remove a proven path; a directory only once nothing is mounted in it (its journal's mounts were
    unmounted before: nsconform.hygiene.reaper), else it is left alone with the mounts named."""
    path = entry.name
    if os.path.isdir(path) and not os.path.islink(path):
        below = [row[2] for row in probe.mountinfo() if row[2] == path or row[2].startswith(path + "/")]
        if below:
            raise Unverifiable(f"mounts its journal did not record (or could not prove) are in it: {', '.join(below)}")
        shutil.rmtree(path)
    else:
        os.unlink(path)


# -- mounts -------------------------------------------------------------------------------------


def topmost(point: str) -> list[Any] | None:
    """The mountinfo row of what is visible at `point`: the last mount made there."""
    rows = [row for row in probe.mountinfo() if row[2] == point]
    return rows[-1] if rows else None


def mount_present(entry: Entry, owner: Owner) -> bool:
    table = probe.mountinfo()
    if not [row for row in table if row[2] == entry.name]:
        return False
    if entry.identity is None:
        raise never_made(entry)
    unique = identity.mount_unique_id(entry.name)
    if unique is None:
        raise Unverifiable(f"the mount at {entry.name}: this kernel gives mounts no unique id (Linux 6.8+)")
    proven(entry, {"mnt_id_unique": unique}, ("mnt_id_unique",), f"the mount at {entry.name}")
    below = [row[2] for row in table if row[2].startswith(entry.name.rstrip("/") + "/")]
    if below:
        raise Unverifiable(f"mounts its journal did not record (or could not prove) are below it: {', '.join(below)}")
    return True


def remove_mount(entry: Entry, owner: Owner) -> None:
    probe.unmount(entry.name, detach=True)


def mount_identity(point: str) -> dict[str, Any]:
    """The identity of the mount just made at `point`: its id, and its unique id where the kernel has one."""
    row = topmost(point)
    if row is None:
        raise OSError(f"nothing is mounted at {point}")
    return {"mount_id": int(row[0]), "mnt_id_unique": identity.mount_unique_id(point)}


# -- SysV IPC objects -------------------------------------------------------------------------


def sysv_objects(kind: str) -> list[dict[str, Any]]:
    """Key, id, creator (pid: shm only; uid) and creation time of every SysV object of `kind` in this IPC
    namespace, as /proc/sysvipc shows them (its keys printed signed: read back unsigned, as key_t is used)."""
    found = []
    with open(f"/proc/sysvipc/{kind}") as f:
        lines = f.read().splitlines()
    columns = lines[0].split()
    for row in lines[1:]:
        cols = dict(zip(columns, map(int, row.split()), strict=False))
        found.append(
            {
                "key": cols["key"] & 0xFFFFFFFF,
                "id": cols[columns[1]],  # shmid, semid, msqid
                "cpid": cols.get("cpid"),  # the kernel shows a creator pid for shm only
                "cuid": cols["cuid"],
                "ctime": cols["ctime"],
            }
        )
    return found


def sysv_identity(kind: str, key: int, ident: int) -> dict[str, Any]:
    """The identity of SysV object `ident` just made with `key`: its id, creator and creation time."""
    row = next((row for row in sysv_objects(kind) if (row["key"], row["id"]) == (key, ident)), None)
    if row is None:
        raise OSError(f"SysV {kind} {ident} with key {key:#x} is not in /proc/sysvipc/{kind}")
    return {name: row[name] for name in ("id", "cpid", "cuid", "ctime")}


def sysv_present(entry: Entry, owner: Owner) -> bool:
    kind, key = entry.details["ipc"], entry.details["key"] & 0xFFFFFFFF
    rows = [row for row in sysv_objects(kind) if row["key"] == key]
    if not rows:
        return False
    if entry.identity is None:
        raise never_made(entry)
    if rows[0]["id"] != entry.identity.get("id"):
        return False  # another object has the key: the journal's is gone
    return proven(entry, rows[0], ("cuid", "ctime", "cpid"), f"SysV {kind} key {key:#x} id {rows[0]['id']}")


def remove_sysv(entry: Entry, owner: Owner) -> None:
    assert entry.identity is not None
    probe.ipc_remove(entry.details["ipc"], entry.identity["id"])


# -- POSIX message queues -----------------------------------------------------------------------


def mqueue_present(entry: Entry, owner: Owner) -> bool:
    try:
        inode = identity.mqueue_inode(entry.name)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise Unverifiable(f"message queue {entry.name}: {e.strerror}") from None
    if entry.identity is None:
        raise never_made(entry)
    return proven(entry, {"ino": inode}, ("ino",), f"message queue {entry.name}")


def remove_mqueue(entry: Entry, owner: Owner) -> None:
    probe.mq_remove(entry.name)


# -- network links ------------------------------------------------------------------------------


def link_present(entry: Entry, owner: Owner) -> bool:
    """A link by its name and the ifalias its intent names (set by the harness right after making it), and by
    its ifindex once recorded."""
    try:
        index = socket.if_nametoindex(entry.name)
    except OSError:
        return False
    what = f"link {entry.name} (ifindex {index})"
    if entry.details.get("alias") is None:
        raise Unverifiable(f"{what}: the journal records no ifalias that would tell it from a later link")
    if entry.identity is not None and entry.identity.get("ifindex") != index:
        return False  # another link has the name: the journal's is gone
    alias = identity.link_alias(entry.name)
    if alias != entry.details["alias"]:
        if entry.identity is None and not alias:
            raise never_made(entry)  # made, its alias never set: cannot tell
        raise Replaced(f"{what} is not the one recorded: ifalias {alias!r}")
    entry.identity = {"ifindex": index}
    return True


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
    if entry.identity is None:
        if not entry.name or not [pid for pid in with_argument(entry.name) if pid != os.getpid() and not zombie(pid)]:
            return False  # no live process bears its exact tag
        raise never_made(entry)
    pid = entry.identity.get("pid")
    if not isinstance(pid, int) or (start := process_start(pid)) is None or zombie(pid):
        return False
    return proven(entry, {"start": start}, ("start",), f"process {pid}")


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
