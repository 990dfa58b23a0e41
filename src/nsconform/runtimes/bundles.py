"""What a rootfs-based runtime needs to start the probe: a root directory, and for OCI runtimes a bundle.

The root is empty but for mount points and the host's top-level symlinks (/bin -> usr/bin on a
usr-merged host): the probe's interpreter and its libraries come from a read-only bind of the
host's /usr (and of /bin, /lib ... where they are real directories), done by the runtime inside
the sandbox's own mount namespace. Nothing is ever mounted on the host: every bundle isolates mnt.

The OCI bundle (runtime-spec 1.0) runs the probe as root of the sandbox with the harness's own
capabilities, less those the runtime does not know (the namespaces are under test, not the capability
drop; a profile's [oci] capabilities or features say which it knows), no seccomp filter, a
read-only root, a private /tmp, and per namespace what a container runtime would give it: its own
/proc with PID, /dev/shm and /dev/mqueue with IPC (the host's /dev/shm when IPC is shared),
sysfs with NET, and root mapped to the unprivileged host range 100000-165535 with USER. A profile's
[oci] mounts (the harness's volume, typically) come last, and its rootfs_propagation is the bundle's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsconform.hygiene import journal
from nsconform.namespaces import Combination
from nsconform.sandbox.native import SUBORDINATE_RANGE

MOUNT_POINTS = ("usr", "proc", "dev", "sys", "tmp", "etc", "run")
TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")  # symlinks into /usr on usr-merged hosts
OCI_TYPES = {
    "pid": "pid",
    "net": "network",
    "mnt": "mount",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
}
# Capability names by number (linux/capability.h), for the process's capability sets.
# fmt: off
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
# fmt: on


def make_rootfs(root: Path) -> list[str]:
    """Make the empty root at `root`; returns the host directories the runtime must bind read-only."""
    root.mkdir(mode=0o755)
    for name in MOUNT_POINTS:
        (root / name).mkdir(mode=0o755)
    binds = ["/usr"]
    for name in TOP_LEVEL:
        host = Path("/", name)
        if host.is_symlink():
            (root / name).symlink_to(os.readlink(host))
        elif host.is_dir():
            (root / name).mkdir(mode=0o755)
            binds.append(str(host))
    return binds


@dataclass(frozen=True)
class BundleSpec:
    """What a runtime adds to the generated bundle (a profile's [oci], placeholders filled)."""

    known_capabilities: frozenset[str] | None = None  # None: every capability the kernel has
    mounts: tuple[dict[str, Any], ...] = ()
    rootfs_propagation: str | None = None


def write_oci_bundle(bundle: Path, combination: Combination, args: list[str], spec: BundleSpec) -> None:
    """config.json and rootfs/ in `bundle`, for a sandbox isolating `combination` (plus mnt) that runs `args`."""
    binds = make_rootfs(bundle / "rootfs")
    config = oci_config(combination | {"mnt"}, args, binds, spec)
    (bundle / "config.json").write_text(json.dumps(config, indent=1))


def write_shipped_bundle(bundle: Path, spec_command: list[str], args: list[str], *, unfiltered: bool) -> None:
    """The runtime's own default bundle in `bundle`: config.json as `spec_command` (`runc spec --bundle DIR`)
    writes it, changed only where the probe needs it: its command (process.args, no terminal), the empty root
    (rootfs/, of make_rootfs) and read-only binds of the host's /usr (and /lib ... where they are directories)
    for its interpreter. Every other default (capabilities, no_new_privs, masked and read-only paths, mounts,
    seccomp, rlimits) stays as the runtime ships it; `unfiltered` drops linux.seccomp (the twin sandbox)."""
    subprocess.run(spec_command, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=30, cwd=bundle)
    config = json.loads((bundle / "config.json").read_text())
    binds = make_rootfs(bundle / "rootfs")
    config["process"] |= {"args": args, "terminal": False}
    config["root"] = {**config.get("root", {}), "path": "rootfs"}
    config["mounts"] = [
        *config.get("mounts", []),
        *({"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]} for path in binds),
    ]
    if unfiltered:
        config.get("linux", {}).pop("seccomp", None)
    (bundle / "config.json").write_text(json.dumps(config, indent=1))


def oci_config(
    combination: Combination, args: list[str], binds: Iterable[str], spec: BundleSpec | None = None
) -> dict[str, Any]:
    spec = spec or BundleSpec()
    # In a user namespace of its own, root holds every capability of that namespace, whatever the host's
    # bounding set: the kernel grants the full set there, and so must the bundle, or the drop is ours.
    caps = [f"CAP_{name}" for name in CAPABILITIES] if "user" in combination else capabilities()
    if spec.known_capabilities is not None:
        caps = [cap for cap in caps if cap in spec.known_capabilities]
    linux: dict[str, Any] = {"namespaces": [{"type": OCI_TYPES[ns]} for ns in sorted(combination)]}
    if "user" in combination:
        outside, count = SUBORDINATE_RANGE
        linux["uidMappings"] = linux["gidMappings"] = [{"containerID": 0, "hostID": outside, "size": count}]
    if spec.rootfs_propagation:
        linux["rootfsPropagation"] = spec.rootfs_propagation
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {kind: caps for kind in ("bounding", "effective", "permitted", "inheritable", "ambient")},
        },
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [*mounts(combination, binds), *spec.mounts],
        "linux": linux,
    }


def mounts(combination: Combination, binds: Iterable[str]) -> list[dict[str, Any]]:
    """The sandbox's mounts; a filesystem the sandbox may not mount afresh comes from the host by bind."""

    def fresh(target: str, fstype: str, *options: str) -> dict[str, Any]:
        return {"destination": target, "type": fstype, "source": fstype, "options": list(options)}

    def bind(target: str, *options: str) -> dict[str, Any]:
        return {"destination": target, "type": "bind", "source": target, "options": ["rbind", *options]}

    user = "user" in combination
    table = [
        # proc needs root over the PID namespace's owner; sysfs over the network namespace's owner
        fresh("/proc", "proc", "nosuid", "nodev", "noexec") if "pid" in combination or not user else bind("/proc"),
        fresh("/dev", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
    ]
    if "ipc" in combination:
        table += [
            fresh("/dev/shm", "tmpfs", "nosuid", "nodev", "noexec", "mode=1777", "size=65536k"),
            fresh("/dev/mqueue", "mqueue", "nosuid", "nodev", "noexec"),
        ]
    else:
        table += [bind(path) for path in ("/dev/shm", "/dev/mqueue") if os.path.ismount(path)]
    table += [
        fresh("/sys", "sysfs", "nosuid", "nodev", "noexec", "ro")
        if "net" in combination or not user
        else bind("/sys", "ro"),
        fresh("/tmp", "tmpfs", "nosuid", "nodev", "mode=1777"),
        *(bind(path, "ro") for path in binds),
    ]
    return table


def capabilities() -> list[str]:
    """The names of the capabilities in this process's bounding set (a runtime cannot grant more)."""
    with open("/proc/self/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return [f"CAP_{name}" for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]


def remove_scratch(path: Path, entry: journal.Entry, record: journal.Journal) -> None:
    """Remove a journaled scratch dir, unless something is mounted under it on the host (then removing would
    reach in: it is left, journaled, for the audit to name)."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        mounted = [line.split()[4] for line in f if (line.split()[4] + "/").startswith(prefix)]
    if mounted:
        raise RuntimeError(f"not removing {path}: the host has mounts under it: {', '.join(mounted[:5])}")
    if os.path.lexists(path):
        shutil.rmtree(path)
    record.removed(entry)
