"""A runtime's `spec` command, then one deliberate weakening of the bundle it wrote: for the areas' controls.

    python3 tests/shipped_spec.py RUNTIME BUNDLE CHANGE [ARG...]

runs `RUNTIME spec --bundle BUNDLE` and applies CHANGE (with its ARGs) to BUNDLE/config.json (`change` below):
a profile's [hardening] spec in tests/test_areas.py, so that the sandbox is the runtime's own but for that one
change.
Standard library only: the harness runs it with the host's python3.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

# A filter a sound profile declares: these syscalls refused with EPERM, every other allowed.
FILTERED = ("keyctl", "add_key", "request_key", "unshare", "bpf", "userfaultfd", "perf_event_open")
SECCOMP = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": list(FILTERED), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


def add_capability(config: dict[str, Any], name: str) -> None:
    for kind, held in config["process"]["capabilities"].items():
        if kind != "inheritable":
            held.append(name)


def host_block_devices() -> list[dict[str, Any]]:
    """The host's block device nodes under /dev, as OCI linux.devices entries (what docker gives --privileged)."""
    found = []
    for name in sorted(os.listdir("/dev")):
        st = os.lstat(f"/dev/{name}")
        if stat.S_ISBLK(st.st_mode):
            numbers = {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}
            found.append({"path": f"/dev/{name}", "type": "b", **numbers, "fileMode": 0o600, "uid": 0, "gid": 0})
    return found


def bind(source: str, destination: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": source, "options": ["rbind", *options]}


def change(config: dict[str, Any], what: str, args: list[str]) -> None:
    linux = config["linux"]
    if what == "sound":
        return
    if what == "filter":
        linux["seccomp"] = SECCOMP
    elif what == "dac_read_search":
        add_capability(config, "CAP_DAC_READ_SEARCH")
    elif what == "new_privs":
        config["process"]["noNewPrivileges"] = False
    elif what == "unmasked":
        linux["maskedPaths"] = [p for p in linux["maskedPaths"] if p not in ("/proc/keys", "/proc/timer_list")]
    elif what == "proc_sys_writable":
        linux["readonlyPaths"] = [p for p in linux["readonlyPaths"] if p != "/proc/sys"]
    elif what == "privileged":  # what `docker run --privileged` changes: every capability, nothing masked or read-only,
        # every device allowed and the host's disks in /dev
        config["process"]["capabilities"] = {kind: list(args) for kind in ("bounding", "effective", "permitted")}
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
        linux.pop("seccomp", None)
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        linux["devices"] = host_block_devices()
    elif what == "host_disk":  # `--device PATH`: the host's disk ARGS (path, major, minor) as a node, readable
        path, major, minor = args[0], int(args[1]), int(args[2])
        linux["devices"] = [{"path": path, "type": "b", "major": major, "minor": minor, "fileMode": 0o600}]
        linux["resources"]["devices"].append(
            {"allow": True, "type": "b", "major": major, "minor": minor, "access": "r"}
        )
    elif what == "mknod":  # every block device allowed by the device cgroup, and CAP_MKNOD to make one
        linux["resources"]["devices"].append({"allow": True, "type": "b", "access": "rwm"})
        add_capability(config, "CAP_MKNOD")
    elif what == "proc_sys_elsewhere":  # the host's /proc/sys bound in read-write beside the read-only one
        config["mounts"].append(bind("/proc/sys", "/run/host-sys", "rw"))
    elif what == "release_agent":  # cgroup v1 hierarchy ARGS[0]'s root bound in read-write, and CAP_SYS_ADMIN
        config["mounts"].append(bind(args[0], "/run/host-cgroup", "rw"))
        add_capability(config, "CAP_SYS_ADMIN")
    elif what == "host_socket":  # `-v /run/docker.sock:...`: the host listener at ARGS[0] bound in
        config["mounts"].append(
            {"destination": "/run/daemon.sock", "type": "bind", "source": args[0], "options": ["bind"]}
        )
    else:
        raise SystemExit(f"unknown change {what!r}")


def main() -> None:
    runtime, bundle, what, *args = sys.argv[1:]
    subprocess.run([runtime, "spec", "--bundle", bundle], check=True)
    path = Path(bundle, "config.json")
    config = json.loads(path.read_text())
    change(config, what, args)
    path.write_text(json.dumps(config, indent=1))


if __name__ == "__main__":
    main()
