"""Device nodes reachable inside: which are declared, which the probe may try to open, and what that shows.

A block device, or a character device outside the runtime's declared set, that opens read-only inside is a
violation: the device cgroup (or its eBPF successor) and the nodes a runtime puts in /dev are what keep a
container off the host's disks (`--privileged` with the host's /dev, the mknod of a disk's numbers).
Device numbers from Linux's Documentation/admin-guide/devices.txt.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass

# The declared names a runtime puts in /dev (OCI runtime-spec, config-linux.md "Default Devices", and /dev/pts),
# with the device each must be: a declared name at other numbers is not the declared device.
WELL_KNOWN: dict[str, tuple[int, int | None]] = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "kmsg": (1, 11),
    "tty": (5, 0),
    "console": (5, 1),
    "ptmx": (5, 2),
    "pts/ptmx": (5, 2),
    "pts/*": (136, None),
    "net/tun": (10, 200),
    "fuse": (10, 229),
    "kvm": (10, 232),
}
# Classes (nsconform.inside.areas.devices.device_class) whose open is only a lookup: the probe may open one, read-only
# and non-blocking, to show it reachable. Block drivers whose open of any minor creates nothing (md and nbd may).
OPENABLE_BLOCK = frozenset({"loop", "virtblk", "sd", "blkext", "zram", "device-mapper", "nvme", "xvd", "mmc"})
OPENABLE_CHAR = frozenset(
    {
        "mem/1",  # /dev/mem
        "mem/2",  # /dev/kmem
        "mem/3",
        "mem/4",  # /dev/port
        "mem/5",
        "mem/7",
        "mem/8",
        "mem/9",
        "mem/11",  # /dev/kmsg
        "misc/183",  # hwrng
        "misc/200",  # net/tun: nothing is made before TUNSETIFF
        "misc/229",  # fuse
        "misc/232",  # kvm
        "misc/234",  # btrfs-control
        "misc/236",  # mapper/control
        "misc/237",  # loop-control
        "cpu/msr",
        "cpu/cpuid",
    }
)
DEVICE_ROOTS = ("/dev",)
SCRATCH_PLACES = ("/dev", "/tmp", "/run")  # where a mknod inside may make its scratch directory, in this order
NODE_FILESYSTEMS = ("devtmpfs",)  # mounted elsewhere too, they are walked as well


@dataclass(frozen=True)
class Node:
    """A device node seen inside (nsconform.inside.areas.devices.device_nodes)."""

    path: str
    kind: str  # 'c' or 'b'
    major: int
    minor: int
    cls: str  # its driver's class, '' where the kernel names none

    @classmethod
    def from_probe(cls, row: list) -> Node:
        path, kind, major, minor, _mode, _uid, _gid, klass = row
        return cls(path, kind, major, minor, klass)

    @property
    def number(self) -> str:
        return f"{self.kind} {self.major}:{self.minor}"


def roots(mount_table: Iterable[dict]) -> list[str]:
    """Where device nodes are looked for: /dev, every devtmpfs mounted elsewhere, and every mount point that is
    itself a single node bound in (its root is no directory of the filesystem: a file bind)."""
    found = list(DEVICE_ROOTS)
    for mount in mount_table:
        point = mount["point"]
        if any(point == r or point.startswith(r.rstrip("/") + "/") for r in found):
            continue
        if mount["fstype"] in NODE_FILESYSTEMS or mount["root"].startswith("/dev/"):
            found.append(point)
    return found


def declared(node: Node, names: Iterable[str], dev_root: str = "/dev") -> bool:
    """Whether `node` is one of the declared character devices: a well-known name's device wherever it is (a
    runtime masks a path with a bind of /dev/null), or a node at another declared name under /dev (a glob)."""
    if node.kind != "c":
        return False
    name = node.path[len(dev_root) + 1 :] if node.path.startswith(dev_root + "/") else None
    for pattern in names:
        if pattern in WELL_KNOWN:
            major, minor = WELL_KNOWN[pattern]
            if node.major == major and minor in (None, node.minor):
                return True
        elif name is not None and fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def openable(node: Node) -> bool:
    """Whether the probe may open `node` to show it reachable (its class is on the allowlist)."""
    return node.cls in (OPENABLE_BLOCK if node.kind == "b" else OPENABLE_CHAR)


@dataclass
class Survey:
    """What the nodes inside come to: those to try to open, and those that are not judged, with why."""

    to_try: list[Node]
    declared: list[str]
    untried: dict[str, str]  # path -> why it is not opened


def survey(nodes: Iterable[Node], names: Iterable[str]) -> Survey:
    """Sort the nodes seen inside: declared ones pass unopened; a block device or an undeclared character device
    is tried where its class allows an open, else named as not tried."""
    names = list(names)
    result = Survey(to_try=[], declared=[], untried={})
    for node in nodes:
        if declared(node, names):
            result.declared.append(node.path)
        elif openable(node):
            result.to_try.append(node)
        else:
            result.untried[node.path] = f"{node.number} ({node.cls or 'no driver'}): its class is never opened"
    return result


def host_block_device() -> tuple[int, int] | None:
    """The numbers of a host block device for a mknod inside to name: one that the host's root opens (read-only,
    as the probe does), the disk of the host's root filesystem first; None where the host's /dev has none.
    A device the host itself may not open would show nothing about the sandbox."""
    from nsconform.inside.areas import devices as probe

    root = os.stat("/").st_dev
    blocks = [n for n in map(Node.from_probe, probe.device_nodes()["nodes"]) if n.kind == "b" and openable(n)]
    blocks.sort(key=lambda n: (os.makedev(n.major, n.minor) != root, n.major, n.minor))
    for node in blocks:
        if probe.open_device(node.path, "b", node.major, node.minor) == "ok":
            return node.major, node.minor
    return None


def own_scratch_places(pid: int | None) -> list[str]:
    """Of SCRATCH_PLACES, those on a filesystem of the sandbox's own, which the host has not mounted (a scratch
    directory made there is never made on the host): by the device of each, seen through /proc/PID/root, against
    every filesystem the host mounts. Where the sandbox runs a kernel of its own (`pid` None) all of them."""
    if pid is None:
        return list(SCRATCH_PLACES)
    with open("/proc/self/mountinfo") as f:
        host = {os.makedev(*map(int, line.split()[2].split(":"))) for line in f}
    places = []
    for place in SCRATCH_PLACES:
        try:
            st = os.stat(f"/proc/{pid}/root{place}")
        except OSError:
            continue
        if st.st_dev not in host:
            places.append(place)
    return places


def cgroup_rules(pid: int) -> list[str] | None:
    """The rules of process `pid`'s cgroup v1 device controller (devices.list: 'c 1:3 rwm', 'a *:* rwm'), read on
    the host; None where the host has no v1 device hierarchy (cgroup v2 filters devices with an eBPF program,
    which cannot be read as rules)."""
    hierarchy = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fstype, _, options = tail.split()[:3]
            if fstype == "cgroup" and "devices" in options.split(","):
                hierarchy = (head.split()[4], head.split()[3])
                break
    if hierarchy is None:
        return None
    point, mounted_root = hierarchy
    with open(f"/proc/{pid}/cgroup") as f:
        path = next((line.split(":", 2)[2].strip() for line in f if "devices" in line.split(":")[1].split(",")), None)
    if path is None:
        return None
    relative = os.path.relpath(path, mounted_root)
    with open(os.path.join(point, relative, "devices.list")) as f:
        return f.read().split("\n")[:-1]


def cgroup_allows(node: Node, rules: Iterable[str], access: str = "r") -> bool:
    """Whether device cgroup v1 `rules` allow `access` to `node`."""
    for rule in rules:
        kind, numbers, allowed = rule.split()
        major, minor = numbers.split(":")
        if (
            kind in ("a", node.kind)
            and major in ("*", str(node.major))
            and minor in ("*", str(node.minor))
            and access in allowed
        ):
            return True
    return False
