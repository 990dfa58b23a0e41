"""The host before and after the project's own tests: what they changed and did not put back.

The session's controller takes the host's forwarding and the other sysctls the host audit watches, its
links and its mounts when the session starts and again when it ends. Other programs change the host
meanwhile (other developers' test sessions on a shared machine, their daemons), so a difference is blamed
on this session only through the journals (nsconform.hygiene.journal): every journal made during the
session is told, when it appears (inotify, no polling), for one of this session's processes (a descendant
of the controller) or another program's, by its header's pid. A link or a mount whose name carries the
token of one of this session's journals is this session's; a watched sysctl that changed is this session's
unless another program's journals show it was at work meanwhile (then it is reported, not failed).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import struct
import threading
from pathlib import Path

import psutil

from nsconform.hygiene import audit, journal

ASPECTS = ("sysctls", "links", "mounts")
IN_CLOEXEC = 0o2000000
IN_CREATE = 0x100
IN_MOVED_TO = 0x80
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


def host() -> audit.Snapshot:
    taken = audit.snapshot()
    return {aspect: taken[aspect] for aspect in ASPECTS}


class Watch:
    """Started when the session starts; `finish()` when it ends says what it changed and what others did."""

    def __init__(self, session: int | None = None) -> None:
        self.session = session or os.getpid()  # the process whose descendants are this session's
        self.directory = journal.directory()
        self.ours: set[str] = set()  # tokens of this session's journals
        self.others: set[str] = set()  # tokens of other programs' journals (their pids, told at once)
        self.before = host()
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_CLOEXEC)
        if (
            self.fd < 0
            or self.libc.inotify_add_watch(self.fd, str(self.directory).encode(), IN_CREATE | IN_MOVED_TO) < 0
        ):
            raise OSError(ctypes.get_errno(), f"inotify on {self.directory}")
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)
        self.thread = threading.Thread(target=self.follow, name="nsconform-tests-hostwatch", daemon=True)
        self.thread.start()

    def follow(self) -> None:
        """Tell each new journal for ours or another's, until told to stop."""
        while True:
            readable = select.select([self.fd, self.stop_r], [], [])[0]
            if self.stop_r in readable:
                return
            data = os.read(self.fd, 65536)
            offset = 0
            while offset < len(data):
                _, _, _, length = EVENT.unpack_from(data, offset)
                name = data[offset + EVENT.size : offset + EVENT.size + length].rstrip(b"\0").decode()
                offset += EVENT.size + length
                if name.endswith(".journal"):
                    self.tell(self.directory / name)

    def tell(self, path: Path) -> None:
        try:
            with path.open() as f:
                header = json.loads(f.readline())
        except (OSError, ValueError):
            return  # gone already (a process that made nothing to keep), or not a journal
        if not isinstance(header, dict) or not isinstance(header.get("pid"), int) or "token" not in header:
            return  # no journal header: nothing to tell it by
        try:
            ours = any(parent.pid == self.session for parent in psutil.Process(header["pid"]).parents())
        except psutil.Error:
            return  # its process is gone: neither blamed nor taken for another program's
        (self.ours if ours or header["pid"] == self.session else self.others).add(header["token"])

    def finish(self) -> tuple[list[str], list[str]]:
        """(what this session changed and did not put back, what changed by others' doing)."""
        os.write(self.stop_w, b"x")
        self.thread.join()
        for fd in (self.fd, self.stop_r, self.stop_w):
            os.close(fd)
        changed = audit.difference(self.before, host())
        blamed, others = [], []
        for aspect, diff in changed.items():
            for sign, entries in diff.items():
                for entry in entries:
                    line = f"{aspect}: {'+' if sign == 'added' else '-'} {entry}"
                    if aspect == "sysctls":
                        (others if self.others else blamed).append(line)
                    elif any(token in entry for token in self.ours):
                        blamed.append(line)
                    else:
                        others.append(line)
        return blamed, others
