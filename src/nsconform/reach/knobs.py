"""The host's global knobs that run code on the host, and the kernel's own rule for who may write them.

A knob is never opened for writing. Inside a sandbox its reach is what faccessat(W_OK, AT_EACCESS) says (the
kernel's permission and read-only checks, without an open), plus, for a cgroup v1 `release_agent`, the check
its write handler makes (CVE-2022-0492, fixed in Linux 5.17 and the stable series: CAP_SYS_ADMIN over the
initial user namespace). Under --nsc-attach the same rule is computed from the target's facts: its mount
flags, the knob's owner and mode, and the target's credentials.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

# name -> (the filesystem it is in, its path there): reachable wherever a mount of that filesystem shows that
# path (a proc bound at /host/proc reaches core_pattern as much as /proc does)
KNOBS: dict[str, tuple[str, str]] = {
    "core_pattern": ("proc", "/sys/kernel/core_pattern"),  # a |pipe runs as root on the host at a crash
    "modprobe": ("proc", "/sys/kernel/modprobe"),  # run as root on the host for an unknown module
    "uevent_helper": ("sysfs", "/kernel/uevent_helper"),  # run as root on the host at every uevent
    "sysrq-trigger": ("proc", "/sysrq-trigger"),  # reboots, crashes, kills every process
    "release_agent": ("cgroup", "/release_agent"),  # a v1 hierarchy's root: run as root when a cgroup empties
}
RELEASE_AGENT = "release_agent"
ALL = tuple(KNOBS)
CAP_DAC_OVERRIDE, CAP_SYS_ADMIN = 1, 21
SYSCTLS = "/proc/sys/"
OCI_READONLY = "OCI runtime-spec config-linux.md: Readonly Paths"
REFERENCES: dict[str, tuple[str, ...]] = {
    "core_pattern": ("core(5)", OCI_READONLY),
    "modprobe": ("Linux Documentation/admin-guide/sysctl/kernel.rst", OCI_READONLY),
    "uevent_helper": ("Linux Documentation/ABI/testing/sysfs-kernel-uevent_helper",),
    "sysrq-trigger": ("Linux Documentation/admin-guide/sysrq.rst", OCI_READONLY),
    RELEASE_AGENT: ("CVE-2022-0492", "Linux Documentation/admin-guide/cgroup-v1/cgroups.rst"),
}


@dataclass(frozen=True)
class Credentials:
    """Who root inside is to the kernel when it checks a knob's write."""

    uid: int  # the effective uid, as the host knows it (mapped through the user namespace)
    gid: int
    cap_eff: int  # the effective capability set
    initial_userns: bool  # whether the process is in the host's user namespace

    def holds(self, cap: int) -> bool:
        return bool(self.cap_eff >> cap & 1)

    def to_json(self) -> dict:
        return {
            "host_uid": self.uid,
            "host_gid": self.gid,
            "cap_eff": f"{self.cap_eff:016x}",
            "initial_user_namespace": self.initial_userns,
        }


def outside_id(inside: int, id_map: Iterable[Iterable[int]]) -> int | None:
    """The host id that `inside` maps to by uid_map or gid_map lines (inside, outside, count); None if unmapped."""
    for first, outside, count in id_map:
        if first <= inside < first + count:
            return outside + inside - first
    return None


def knob_paths(name: str, mount_table: Iterable[dict]) -> list[str]:
    """Every path at which a mount of `mount_table` shows knob `name`: a mount of the knob's filesystem whose root
    is the knob's directory or above it (a cgroup v1 release_agent: only a hierarchy mounted at its root)."""
    fstype, inner = KNOBS[name]
    paths = set()
    for mount in mount_table:
        root = mount["root"].rstrip("/")
        if mount["fstype"] == fstype and inner.startswith(root + "/"):
            paths.add(mount["point"].rstrip("/") + inner[len(root) :])
    return sorted(paths)


def expected_fs(name: str) -> str:
    return KNOBS[name][0]


def dac_permits(facts: dict, creds: Credentials, path: str) -> bool:
    """The kernel's permission rule for a write to a knob file (see `permits`); sysctls check the ids alone
    (proc_sys_permission), without CAP_DAC_OVERRIDE."""
    return permits(facts["mode"], facts["uid"], facts["gid"], creds, 0o2, override=not path.startswith(SYSCTLS))


def permits(mode: int, uid: int, gid: int, creds: Credentials, bit: int, *, override: bool = True) -> bool:
    """generic_permission(): the owner's, group's or others' `bit` (0o4 read, 0o2 write) by who the caller is,
    or CAP_DAC_OVERRIDE where the caller holds it over the file's owner (files owned by the host's root: in the
    initial user namespace only)."""
    if creds.uid == uid:
        bits = mode >> 6
    elif creds.gid == gid:
        bits = mode >> 3
    else:
        bits = mode
    if bits & bit:
        return True
    return override and creds.initial_userns and creds.holds(CAP_DAC_OVERRIDE)


def handler_permits(name: str, creds: Credentials) -> bool:
    """What the knob's write handler checks beyond the file's permission: release_agent wants CAP_SYS_ADMIN
    over the initial user namespace (CVE-2022-0492); the others nothing."""
    return name != RELEASE_AGENT or (creds.initial_userns and creds.holds(CAP_SYS_ADMIN))


@dataclass(frozen=True)
class Reach:
    """One knob file as the sandbox sees it, judged."""

    path: str
    writable: bool
    why: str

    def to_json(self) -> dict:
        return {"path": self.path, "writable": self.writable, "why": self.why}


def judge(name: str, path: str, facts: dict, creds: Credentials, *, behaviour: bool) -> Reach:
    """Whether root inside may write knob file `path`: by the kernel's faccessat inside (`behaviour`), else by
    the rule from the facts (read-only mount, owner and mode, credentials); then the handler's own check."""
    if facts.get("fs") != expected_fs(name):
        return Reach(path, False, f"masked: {facts.get('fs')} is mounted over it, not the {expected_fs(name)} knob")
    if behaviour:
        access = facts["access_w"]
        if access != "ok":
            return Reach(path, False, f"faccessat(W_OK) inside: {access}")
    elif facts["read_only"]:
        return Reach(path, False, "its mount is read-only")
    elif not dac_permits(facts, creds, path):
        return Reach(path, False, f"mode {facts['mode']:o}, owner {facts['uid']}: no write for host uid {creds.uid}")
    if not handler_permits(name, creds):
        return Reach(path, False, "writable, but its write handler wants CAP_SYS_ADMIN over the initial user namespace")
    how = "faccessat(W_OK) inside succeeds" if behaviour else "a read-write mount, and mode and credentials allow it"
    return Reach(path, True, how + ("" if name != RELEASE_AGENT else ", with CAP_SYS_ADMIN over the host"))


def credentials(pid: int) -> Credentials:
    """Process `pid`'s credentials as the host's kernel knows them: its effective ids (as the host reads its
    status), effective capabilities, and whether it is in the host's user namespace."""
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    own, theirs = os.stat("/proc/self/ns/user"), os.stat(f"/proc/{pid}/ns/user")
    return Credentials(
        uid=int(status["Uid"].split()[1]),
        gid=int(status["Gid"].split()[1]),
        cap_eff=int(status["CapEff"].strip(), 16),
        initial_userns=(own.st_dev, own.st_ino) == (theirs.st_dev, theirs.st_ino),
    )


def host_paths(name: str) -> list[str]:
    """Where the host itself shows knob `name` (none where its kernel has no such knob, or no v1 hierarchy)."""
    table = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fields = head.split()
            table.append({"point": fields[4], "root": fields[3], "fstype": tail.split()[0]})
    return [path for path in knob_paths(name, table) if os.path.exists(path)]


def host_values() -> list[str]:
    """`path=value` of every knob the host shows whose value can be read (sysrq-trigger is write-only): for the
    host audit's picture, which shows they are the same after a run."""
    values = []
    for name in KNOBS:
        for path in host_paths(name) if name != "sysrq-trigger" else ():
            try:
                with open(path) as f:
                    values.append(f"{path}={f.read().strip()}")
            except OSError:
                continue
    return values
