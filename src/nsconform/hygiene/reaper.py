"""Reaps what a killed run left behind: everything named after an owner process that is gone.

Runs once per session, in the controller, before any check runs. It only touches objects whose
name carries a tag of nsconform.hygiene.naming with a dead owner, so it never disturbs a run in progress.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil

from nsconform.hygiene import naming
from nsconform.inside import probe

MNT_DETACH = 2


def reap() -> list[str]:
    """Remove every abandoned harness object; returns a line per object removed."""
    done: list[str] = []
    done += reap_processes()
    done += reap_mounts()
    done += reap_paths()
    done += reap_sysv()
    done += reap_links()
    return done


def reap_processes() -> list[str]:
    done = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        owner = naming.process_owner(argv)
        if owner is not None and proc.pid != os.getpid() and not naming.owner_alive(owner):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
                done.append(f"process {proc.pid}: {' '.join(argv)[:120]}")
    return done


def reap_mounts() -> list[str]:
    """Unmount abandoned mount points, deepest first."""
    done = []
    points = [row[2] for row in probe.mountinfo() if naming.abandoned(row[2])]
    for point in sorted(points, key=len, reverse=True):
        raw = point.encode()
        if probe.libc().umount2(raw, MNT_DETACH) == 0:
            done.append(f"mount {point}")
    return done


def reap_paths() -> list[str]:
    """Scratch dirs in the temp dir and POSIX shm objects in /dev/shm."""
    done = []
    for parent in (Path(tempfile.gettempdir()), Path("/dev/shm"), Path("/dev/mqueue")):
        with contextlib.suppress(OSError):
            for path in parent.iterdir():
                if naming.abandoned(path.name):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                    done.append(f"path {path}")
    return done


def reap_sysv() -> list[str]:
    done = []
    for kind, objects in probe.sysvipc().items():
        for key, ident in objects:
            owner = naming.ipc_key_owner(key)
            if owner is not None and not naming.owner_alive(owner):
                with contextlib.suppress(OSError):
                    probe.ipc_remove(kind, ident)
                    done.append(f"sysv {kind} key {key:#x}")
    return done


def reap_links() -> list[str]:
    """Host ends of veth pairs (their peers went with their sandboxes' namespaces)."""
    from pyroute2 import IPRoute, NetlinkError

    done = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and naming.abandoned(name):
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=link["index"])
                    done.append(f"link {name}")
    return done
