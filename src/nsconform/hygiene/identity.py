"""What tells an object the harness made from any later object with the same name or number.

A name, an inode number, an ifindex, a SysV id and a pid are all handed out again once their object is
gone. What the journal records beside them (nsconform.hygiene.journal) is something a new object cannot
have: a file's birth time (statx STATX_BTIME, in nanoseconds) and inode generation (FS_IOC_GETVERSION,
where the filesystem keeps one: ext4 does, tmpfs does not); a mount's unique id (STATX_MNT_ID_UNIQUE,
Linux 6.8: never reused while the machine runs); a link's ifalias, set by the harness to a value of its
run; a SysV object's creation time and creator; a message queue's inode (mqueue numbers them from a
counter); a process's start time.
"""

from __future__ import annotations

import array
import fcntl
import os
import stat
from typing import Any

from nsconform.inside import probe

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
STATX_BTIME = 0x800
STATX_MNT_ID_UNIQUE = 0x4000
FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long)
BIRTH = ("btime", "generation")  # what a path's identity holds beside its device and inode


def statx(path: str, mask: int) -> Any:
    """statx of `path`, not following a last symlink (nsconform.inside.probe.statx gives the layout)."""
    return probe.statx(AT_FDCWD, os.fsencode(path), AT_SYMLINK_NOFOLLOW, mask)


def birth(path: str) -> dict[str, Any]:
    """A path's birth time (`[seconds, nanoseconds]`) and inode generation, each None where its filesystem
    or kernel keeps none (an inode born before the filesystem kept birth times reads 0: none)."""
    found: dict[str, Any] = {"btime": None, "generation": None}
    try:
        buf = statx(path, STATX_BTIME)
    except (OSError, AttributeError):  # AttributeError: a C library without statx
        buf = None
    if buf is not None and buf[0] & STATX_BTIME and (buf[10] or buf[11] & 0xFFFFFFFF):
        found["btime"] = [buf[10], buf[11] & 0xFFFFFFFF]
    try:
        mode = os.lstat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return found  # a device, a FIFO, a link: never opened (opening a device may act on it)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return found
    try:
        value = array.array("l", [0])
        fcntl.ioctl(fd, FS_IOC_GETVERSION, value)
        found["generation"] = value[0]
    except OSError:  # ENOTTY: the filesystem keeps no generation
        pass
    finally:
        os.close(fd)
    return found


def path_identity(path: str) -> dict[str, Any]:
    """Device and inode of `path`, with its birth time and generation (`birth`)."""
    st = os.lstat(path)
    return {"dev": st.st_dev, "ino": st.st_ino, **birth(path)}


def mount_unique_id(point: str) -> int | None:
    """The unique id of the mount visible at `point` (Linux 6.8+), None where the kernel gives none."""
    try:
        buf = statx(point, STATX_MNT_ID_UNIQUE)
    except (OSError, AttributeError):
        return None
    return buf[18] if buf[0] & STATX_MNT_ID_UNIQUE else None


def link_alias(name: str) -> str | None:
    """The ifalias of host link `name` ('' when unset), None if there is no such link."""
    try:
        with open(f"/sys/class/net/{name}/ifalias") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def mqueue_inode(name: str) -> int:
    """The inode of POSIX message queue `name` (mqueue numbers inodes from a counter: a new queue gets a new one)."""
    fd = probe.checked(probe.libc().mq_open(name.encode(), os.O_RDONLY), "mq_open")
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)
