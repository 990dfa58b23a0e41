"""Devices: root inside opens no host disk and no character device beyond those its runtime puts in /dev."""

from __future__ import annotations

import os

import pytest

from nsconform.fixtures.shipped import Shipped, mount_table
from nsconform.guarantees import Verdict, guarantee, skip_nothing
from nsconform.inside.areas import devices as device_probe
from nsconform.reach import devices, knobs
from nsconform.reach.devices import Node

OCI_DEVICES = "OCI runtime-spec config-linux.md: Devices, Default Devices, Device allowlist"
DEVICES_CGROUP = "Linux Documentation/admin-guide/cgroup-v1/devices.rst"
PRIVILEGED = "docker run --privileged: the host's /dev and every device allowed"


@guarantee(area="devices", declares=("devices",), references=(OCI_DEVICES, DEVICES_CGROUP, PRIVILEGED))
def test_no_host_device_opens(shipped: Shipped, verdict: Verdict) -> None:
    """No block device, and no character device outside the runtime's declared set, that is reachable inside
    (under /dev, any devtmpfs mounted elsewhere, any node bound in) opens there, read-only."""
    # 1. the device nodes reachable inside: lstat in a bounded walk, never opening while listing
    # 2. a declared character device at its own numbers is left alone; a block device, or an undeclared
    #    character device of a class whose open only looks (nsconform.reach.devices), is opened
    #    O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC and closed at once; a class whose open acts (watchdog,
    #    snapshot, tty, console) never is, and is named as not tried
    # 3. EXPECT none to open; with no node reachable at all there is nothing to examine
    listed = shipped.probe("device_nodes", roots=devices.roots(shipped.mountinfo()))
    if not listed["nodes"]:
        skip_nothing("no device node is reachable inside, not even a declared one")
    survey = devices.survey(map(Node.from_probe, listed["nodes"]), shipped.declared.devices or ())
    opened, refused = [], {}
    for node in survey.to_try:
        try:
            result = shipped.probe("open_device", path=node.path, kind=node.kind, major=node.major, minor=node.minor)
        except FileNotFoundError:  # gone meanwhile
            continue
        if result == "ok":
            opened.append(f"{node.path} ({node.number}, {node.cls})")
        else:
            refused[node.path] = result
    verdict.note(
        nodes=len(listed["nodes"]),
        declared=survey.declared,
        refused=refused,
        not_tried=survey.untried,
        cut_short=listed["cut_short"],
    )
    verdict.expect(
        not opened,
        "a block device or an undeclared character device opens inside: " + first_few(opened),
        opened=opened,
    )


@guarantee(area="devices", declares=("devices",), references=(OCI_DEVICES, DEVICES_CGROUP, "mknod(2)"))
def test_block_mknod_unusable(shipped: Shipped, verdict: Verdict) -> None:
    """A block device node that root makes inside, at the numbers of a disk the host can open, is of no use:
    mknod is refused or the node does not open."""
    # 1. a host block device the host's root opens read-only (its root filesystem's disk first)
    # 2. inside, in a scratch directory the probe makes on a filesystem of the sandbox's own (never one the host
    #    has mounted): mknod a block node at those numbers, open it read-only, remove both
    # 3. EXPECT the mknod or the open refused
    numbers = devices.host_block_device()
    if numbers is None:
        skip_nothing("the host has no block device its root opens: a node made inside could name none")
    places = devices.own_scratch_places(shipped.pid)
    if not places:
        skip_nothing(
            f"none of {', '.join(devices.SCRATCH_PLACES)} is on a filesystem of the sandbox's own: a scratch "
            "directory made there would be made on the host"
        )
    tried: dict[str, str] = {}
    for place in places:
        try:
            seen = shipped.probe("mknod_block", directory=place, major=numbers[0], minor=numbers[1])
        except OSError as e:  # a read-only or unwritable place: the next one
            tried[place] = e.strerror or str(e)
            continue
        verdict.note(scratch_in=place, host_device=f"b {numbers[0]}:{numbers[1]}", mknod=seen["mknod"])
        verdict.expect(
            seen["open"] != "ok",
            f"a block node made inside at the numbers of the host's b {numbers[0]}:{numbers[1]} opens",
            open=seen["open"],
        )
        return
    pytest.skip(f"the probe could make no scratch directory for the mknod inside: {tried}")


@guarantee(
    area="devices", declares=("devices",), rests_on="facts", references=(OCI_DEVICES, DEVICES_CGROUP, PRIVILEGED)
)
def test_no_host_device_allowed(shipped: Shipped, verdict: Verdict) -> None:
    """No block device, and no character device outside the runtime's declared set, that is reachable from the
    sandbox's root is one its first process may open for reading by the rules the kernel applies at an open: the
    node's mode and owner against its credentials, a mount that allows devices (no nodev), and its device
    cgroup's rules (cgroup v1 devices.list)."""
    # 1. the device nodes reachable from the sandbox's root: lstat through /proc/PID/root (the target's, attached)
    # 2. its device cgroup's rules, its credentials, and whether each node's mount is nodev
    # 3. EXPECT no block device and no undeclared character device to be readable by all three; with no node
    #    reachable at all there is nothing to examine
    pid = shipped.pid
    if pid is None:
        pytest.skip("the sandbox runs a kernel of its own: its device nodes are that kernel's")
    mounts = mount_table(shipped)
    rules = devices.cgroup_rules(pid)
    if rules is None:
        pytest.skip("the host has no cgroup v1 device controller: cgroup v2's eBPF device filter is no readable rule")
    root = f"/proc/{pid}/root"
    listed = device_probe.device_nodes(roots=devices.roots(mounts), root=root)
    if not listed["nodes"]:
        skip_nothing("no device node is reachable from the sandbox's root, not even a declared one")
    declared = shipped.declared.devices or ()
    creds = knobs.credentials(pid)
    allowed = []
    for row in listed["nodes"]:
        node = Node.from_probe(row)
        _path, _kind, _major, _minor, mode, uid, gid, _cls = row
        if devices.declared(node, declared):
            continue
        try:
            nodev = bool(os.statvfs(root + node.path).f_flag & os.ST_NODEV)
        except OSError:  # gone meanwhile
            continue
        if not nodev and devices.cgroup_allows(node, rules) and knobs.permits(mode, uid, gid, creds, 0o4):
            allowed.append(f"{node.path} ({node.number}, {node.cls or 'no driver'})")
    verdict.note(nodes=len(listed["nodes"]), cgroup_rules=rules[:20], credentials=creds.to_json())
    verdict.expect(
        not allowed,
        "a block device or an undeclared character device may be opened inside: " + first_few(allowed),
        allowed=allowed,
    )


def first_few(names: list[str], few: int = 5) -> str:
    return ", ".join(names[:few]) + (f" and {len(names) - few} more" if len(names) > few else "")
