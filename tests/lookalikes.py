"""Objects of someone else's that look like the harness's: a run must never touch them.

Five kinds, made by a process of their own that then exits (so that their creator is gone, as a
killed run's would be): a /tmp/nscd-* directory with a file (the name service cache daemon's
prefix), /dev/shm/nsc*-* files, a SysV segment with key 0x4e...... (ftok(path, 'N')), tmpfs mounts
at look-alike paths, and a veth pair named like the harness's links. The test that makes them
removes them afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from nsconform.hygiene.objects import sysv_objects
from nsconform.inside import probe

MAKER = r"""
import ctypes, json, os, secrets, subprocess
libc = ctypes.CDLL(None, use_errno=True)
r = secrets.token_hex(2)
made = {"dirs": [], "files": [], "mounts": [], "links": []}
cache = f"/tmp/nscd-{r}cafe"
os.mkdir(cache)
with open(f"{cache}/passwd", "w") as f:
    f.write("cached\n")
made["dirs"].append(cache)
for name in (f"nsc{r}fe-1", f"nsc{os.getpid():x}-{r}"):
    with open(f"/dev/shm/{name}", "w") as f:
        f.write("x")
    made["files"].append(f"/dev/shm/{name}")
key = 0x4E000000 | secrets.randbits(24)
ident = libc.shmget(key, 4096, 0o1000 | 0o2000 | 0o600)
assert ident >= 0, os.strerror(ctypes.get_errno())
made["sysv"] = [key, ident]
for name in (f"backup-nscafe-{r}", f"nsconform-gw9-{os.getpid()}-held-{r}"):
    point = f"/tmp/{name}"
    os.mkdir(point)
    assert libc.mount(b"nscafe", point.encode(), b"tmpfs", 0, b"size=64k") == 0, os.strerror(ctypes.get_errno())
    made["dirs"].append(point)
    made["mounts"].append(point)
links = [f"nsc{secrets.token_hex(4)}1", f"nsc{os.getpid():x}-{r}"]
subprocess.run(["ip", "link", "add", links[0], "type", "veth", "peer", "name", links[1]], check=True)
made["links"] = links
print(json.dumps(made))
"""


@dataclass
class LookAlikes:
    dirs: list[str]
    files: list[str]
    mounts: list[str]
    links: list[str]
    sysv: list[int]

    def missing(self) -> list[str]:
        """Those of them that are gone (or are no longer what was made)."""
        gone = [path for path in self.dirs + self.files if not os.path.lexists(path)]
        gone += [f"{self.dirs[0]}/passwd"] if not os.path.exists(f"{self.dirs[0]}/passwd") else []
        points = {row[2] for row in probe.mountinfo() if row[4] == "nscafe"}
        gone += [f"mount {point}" for point in self.mounts if point not in points]
        present = {name for _, name in socket.if_nameindex()}
        gone += [f"link {name}" for name in self.links if name not in present]
        key, ident = self.sysv
        if (key, ident) not in {(row["key"], row["id"]) for row in sysv_objects("shm")}:
            gone.append(f"sysv shm {key:#x}")
        return gone

    def remove(self) -> None:
        for point in self.mounts:
            with suppress(OSError):
                probe.unmount(point, detach=True)
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)
        for path in self.files:
            with suppress(FileNotFoundError):
                os.unlink(path)
        subprocess.run(["ip", "link", "del", self.links[0]], capture_output=True, check=False)
        with suppress(OSError):
            probe.ipc_remove("shm", self.sysv[1])


@contextmanager
def lookalikes() -> Iterator[LookAlikes]:
    """The five kinds of look-alike, made by a process that has exited; removed when the block ends."""
    done = subprocess.run([sys.executable, "-I", "-c", MAKER], capture_output=True, text=True, timeout=60)
    made: dict[str, Any] = json.loads(done.stdout) if done.returncode == 0 else {}
    others = LookAlikes(**{k: made.get(k, []) for k in ("dirs", "files", "mounts", "links", "sysv")})
    try:
        assert done.returncode == 0, done.stderr
        yield others
    finally:
        others.remove()
