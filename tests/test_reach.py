"""The devices, knobs and sockets areas' parts: the probe's looks, sock_diag, and the rules that judge them."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from nsconform.host import sockdiag
from nsconform.inside.areas import devices as device_probe
from nsconform.inside.areas import knobs as knob_probe
from nsconform.inside.areas import sockets as socket_probe
from nsconform.reach import devices, knobs, sockets
from nsconform.reach.devices import Node
from nsconform.reach.knobs import Credentials

ROOT_CAPS = (1 << 41) - 1
HOST_ROOT = Credentials(uid=0, gid=0, cap_eff=ROOT_CAPS, initial_userns=True)
MAPPED_ROOT = Credentials(uid=100000, gid=100000, cap_eff=ROOT_CAPS, initial_userns=False)
SYSCTL = {"exists": True, "fs": "proc", "mode": 0o644, "uid": 0, "gid": 0, "read_only": False, "access_w": "ok"}


def node(path: str, kind: str, major: int, minor: int, cls: str = "") -> Node:
    return Node(path, kind, major, minor, cls)


# -- devices ----------------------------------------------------------------------------------------------------


def test_declared_names_must_be_their_devices() -> None:
    names = ["null", "pts/*", "custom"]
    assert devices.declared(node("/dev/null", "c", 1, 3), names)
    assert devices.declared(node("/dev/pts/4", "c", 136, 4), names)
    assert devices.declared(node("/dev/custom", "c", 240, 1), names)  # not well known: the name is the promise
    assert not devices.declared(node("/dev/null", "c", 254, 0), names)  # another device at a declared name
    assert not devices.declared(node("/dev/null", "b", 1, 3), names)  # a block device is never declared
    assert not devices.declared(node("/dev/zero", "c", 1, 5), names)
    assert devices.declared(node("/proc/keys", "c", 1, 3), names)  # /dev/null bound over a masked path
    assert not devices.declared(node("/mnt/custom", "c", 240, 1), names)


def test_survey_tries_block_and_undeclared_devices_of_allowed_classes() -> None:
    seen = [
        node("/dev/null", "c", 1, 3, "mem/3"),
        node("/dev/vda", "b", 254, 0, "virtblk"),
        node("/dev/kmsg", "c", 1, 11, "mem/11"),
        node("/dev/watchdog", "c", 10, 130, "misc/130"),
        node("/dev/tty1", "c", 4, 1, "tty"),
        node("/dev/md0", "b", 9, 0, "md"),
    ]
    found = devices.survey(seen, ["null"])
    assert [n.path for n in found.to_try] == ["/dev/vda", "/dev/kmsg"]
    assert found.declared == ["/dev/null"]
    assert set(found.untried) == {"/dev/watchdog", "/dev/tty1", "/dev/md0"}


def test_allowlist_holds_no_class_the_probe_never_opens() -> None:
    for cls in devices.OPENABLE_CHAR:
        major = 10 if cls.startswith("misc/") else 1
        minor = int(cls.split("/")[1]) if "/" in cls and cls.split("/")[1].isdigit() else 0
        assert not device_probe.never_opened("c", major, minor, cls), cls


def test_device_roots_add_devtmpfs_and_bound_nodes() -> None:
    table = [
        {"point": "/", "root": "/", "fstype": "ext4"},
        {"point": "/dev", "root": "/", "fstype": "tmpfs"},
        {"point": "/dev/vda", "root": "/vda", "fstype": "devtmpfs"},
        {"point": "/host-dev", "root": "/", "fstype": "devtmpfs"},
        {"point": "/disk", "root": "/dev/sda", "fstype": "ext4"},
    ]
    assert devices.roots(table) == ["/dev", "/host-dev", "/disk"]


def test_probe_lists_device_nodes_with_their_class() -> None:
    listed = device_probe.device_nodes()
    by_path = {row[0]: row for row in listed["nodes"]}
    assert by_path["/dev/null"][1:4] == ["c", 1, 3]
    assert by_path["/dev/null"][7] == "mem/3"
    assert not listed["cut_short"]


def test_probe_open_device_refuses_never_opened_and_changed_nodes() -> None:
    assert device_probe.open_device("/dev/null", "c", 1, 3) == "ok"
    with pytest.raises(OSError) as refused:
        device_probe.open_device("/dev/tty", "c", 5, 0)
    assert refused.value.errno == 1
    with pytest.raises(OSError) as stale:
        device_probe.open_device("/dev/null", "c", 1, 5)  # not the device it was
    assert stale.value.errno == 116


def test_probe_mknod_block_leaves_nothing(tmp_path: Path) -> None:
    numbers = devices.host_block_device()
    assert numbers is not None
    seen = device_probe.mknod_block(str(tmp_path), *numbers)
    assert seen["mknod"] == "ok"  # root on the host, every capability: its open is the device cgroup's call
    assert seen["open"] == "ok"
    assert list(tmp_path.iterdir()) == []


# -- knobs -------------------------------------------------------------------------------------------------------


def test_knob_rule_by_mount_owner_and_credentials() -> None:
    path = "/proc/sys/kernel/core_pattern"
    assert knobs.judge("core_pattern", path, SYSCTL, HOST_ROOT, behaviour=False).writable
    assert not knobs.judge("core_pattern", path, {**SYSCTL, "read_only": True}, HOST_ROOT, behaviour=False).writable
    # a sysctl checks the ids alone: root of a user namespace is another uid to it, whatever its capabilities
    assert not knobs.judge("core_pattern", path, SYSCTL, MAPPED_ROOT, behaviour=False).writable
    masked = knobs.judge("core_pattern", path, {**SYSCTL, "fs": "tmpfs"}, HOST_ROOT, behaviour=False)
    assert not masked.writable and masked.why.startswith("masked")


def test_knob_inside_follows_faccessat() -> None:
    path = "/proc/sys/kernel/core_pattern"
    assert knobs.judge("core_pattern", path, SYSCTL, MAPPED_ROOT, behaviour=True).writable
    assert not knobs.judge("core_pattern", path, {**SYSCTL, "access_w": "EROFS"}, HOST_ROOT, behaviour=True).writable


def test_release_agent_needs_sys_admin_over_the_host() -> None:
    facts = {**SYSCTL, "fs": "cgroup"}
    path = "/sys/fs/cgroup/cpu/release_agent"
    assert knobs.judge("release_agent", path, facts, HOST_ROOT, behaviour=True).writable
    no_admin = Credentials(uid=0, gid=0, cap_eff=ROOT_CAPS & ~(1 << knobs.CAP_SYS_ADMIN), initial_userns=True)
    assert not knobs.judge("release_agent", path, facts, no_admin, behaviour=True).writable
    assert not knobs.judge("release_agent", path, facts, MAPPED_ROOT, behaviour=True).writable


def test_knob_paths_wherever_its_filesystem_shows_it() -> None:
    table = [
        {"point": "/proc", "root": "/", "fstype": "proc"},
        {"point": "/proc/sys", "root": "/sys", "fstype": "proc"},  # read-only bind of the same on itself
        {"point": "/host/kernel", "root": "/sys/kernel", "fstype": "proc"},
        {"point": "/host/net", "root": "/sys/net", "fstype": "proc"},
        {"point": "/sys/fs/cgroup/cpu", "root": "/", "fstype": "cgroup"},
        {"point": "/sys/fs/cgroup/memory", "root": "/docker/abc", "fstype": "cgroup"},  # the file is only at a root
        {"point": "/sys/fs/cgroup/unified", "root": "/", "fstype": "cgroup2"},
    ]
    assert knobs.knob_paths("core_pattern", table) == ["/host/kernel/core_pattern", "/proc/sys/kernel/core_pattern"]
    assert knobs.knob_paths("release_agent", table) == ["/sys/fs/cgroup/cpu/release_agent"]
    assert knobs.knob_paths("uevent_helper", table) == []


def test_outside_id() -> None:
    assert knobs.outside_id(0, [[0, 100000, 65536]]) == 100000
    assert knobs.outside_id(70000, [[0, 100000, 65536]]) is None


def test_probe_knob_facts_never_write(tmp_path: Path) -> None:
    facts = knob_probe.knob_facts(["/proc/sys/kernel/core_pattern", str(tmp_path / "absent")])
    seen = facts["/proc/sys/kernel/core_pattern"]
    assert seen["fs"] == "proc" and seen["access_w"] in ("ok", "EROFS", "EACCES")
    assert facts[str(tmp_path / "absent")] == {"exists": False, "stat": "ENOENT"}


# -- sockets -----------------------------------------------------------------------------------------------------


def test_kernel_device_numbers_become_stat_numbers() -> None:
    assert sockdiag.user_device(254 << 20 | 0) == os.makedev(254, 0)
    assert sockdiag.user_device(8 << 20 | 300) == os.makedev(8, 300)


def test_a_listener_is_matched_by_its_file_without_a_connect(tmp_path: Path) -> None:
    path = tmp_path / "listening"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen(1)
        found = socket_probe.socket_files([str(tmp_path)])
        assert [row[0] for row in found["sockets"]] == [str(path)]
        listeners = sockdiag.listening()
        (match,) = sockets.match(
            found["sockets"], listeners, sockdiag.holders, lambda pid: False, own_netns=False, declared=[]
        )
        assert match.listener.path == str(path)
        assert match.holders == [os.getpid()]
        assert match.violates
        (own,) = sockets.match(
            found["sockets"], listeners, sockdiag.holders, lambda pid: True, own_netns=False, declared=[]
        )
        assert not own.violates  # held by the sandbox's own process, in a network namespace it shares
        (allowed,) = sockets.match(
            found["sockets"], listeners, sockdiag.holders, lambda pid: False, own_netns=True, declared=[str(path)]
        )
        assert allowed.outside and not allowed.violates
    assert stat.S_ISSOCK(path.lstat().st_mode)  # closed, not listening: no longer a match
    assert sockets.match([[str(path), *_identity(path)]], sockdiag.listening(), sockdiag.holders, bool, True, []) == []


def _identity(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_dev, st.st_ino


def test_socket_roots_skip_the_root_and_pseudo_filesystems() -> None:
    table = [
        {"point": "/", "root": "/", "fstype": "ext4"},
        {"point": "/proc", "root": "/", "fstype": "proc"},
        {"point": "/var/run/docker.sock", "root": "/run/docker.sock", "fstype": "tmpfs"},
        {"point": "/tmp", "root": "/", "fstype": "tmpfs"},
    ]
    assert sockets.roots(table) == ["/var/run/docker.sock", "/tmp", "/run", "/var/run"]


def test_walk_from_another_root_never_leads_out(tmp_path: Path) -> None:
    """Seen through /proc/PID/root, an absolute link inside would resolve against the harness's root: the walk
    resolves every path as if that root were /."""
    (tmp_path / "escape").symlink_to("/")
    (tmp_path / "run").mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "run" / "inside.sock"))
        found = socket_probe.socket_files(["/escape/dev", "/run"], root=str(tmp_path))
    assert [row[0] for row in found["sockets"]] == ["/run/inside.sock"]
    assert device_probe.device_nodes(roots=["/escape/dev"], root=str(tmp_path))["nodes"] == []
    assert knob_probe.knob_facts(["/escape/proc/sys/kernel/core_pattern"], root=str(tmp_path)) == {
        "/escape/proc/sys/kernel/core_pattern": {"exists": False, "stat": "ENOENT"}
    }
