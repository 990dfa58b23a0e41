"""Host-state audit: what the host looks like before and after a session, and what changed.

Everything a run could leave behind is listed as a set of short strings per aspect; the
difference between two snapshots is the run's trace. Objects that carry the tag of another live
run (nsconform.hygiene.naming) are left out, so that concurrent runs do not blame each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil

from nsconform.hygiene import naming
from nsconform.inside import probe

Snapshot = dict[str, set[str]]
SYSCTLS = (
    "kernel/hostname",
    "kernel/domainname",
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/ping_group_range",
    "user/max_user_namespaces",
)
# What a runtime of a profile may leave by itself: reported as its finding, not the harness's fault.
RUNTIME_ASPECTS = ("cgroups", "run_mounts", "netns")


def snapshot() -> Snapshot:
    uts = probe.uts()
    mounts = {f"{row[2]} {row[3]} {row[4]}" for row in probe.mountinfo()}
    return {
        "uts": {f"hostname={uts['hostname']}", f"domainname={uts['domainname']}"},
        "mounts": {m for m in mounts if not m.startswith("/run/")},
        "run_mounts": {m for m in mounts if m.startswith("/run/")},
        "sysvipc": {
            f"{kind} {naming.describe_ipc_key(key)}" for kind, rows in probe.sysvipc().items() for key, _ in rows
        },
        "dev_shm": set(listing("/dev/shm")),
        "dev_mqueue": set(listing("/dev/mqueue")),
        "netns": set(listing("/run/netns")),
        "sysctls": {f"{name}={read(Path('/proc/sys', name))}" for name in SYSCTLS},
        "cgroups": set(cgroup_dirs()),
        "processes": set(tagged_processes()),
        "scratch": {p for p in listing("/tmp") if naming.owner_of(p) is not None},
        **network(),
    }


def listing(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def read(path: Path) -> str:
    try:
        return " ".join(path.read_text().split())
    except OSError:
        return "unreadable"


def cgroup_dirs() -> Iterator[str]:
    root = Path("/sys/fs/cgroup")
    for top, dirs, _ in os.walk(root):
        for name in dirs:
            yield str(Path(top, name).relative_to(root))


def tagged_processes() -> Iterator[str]:
    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        owner = naming.process_owner(argv)
        if owner is not None:
            yield f"{proc.pid} {naming.PREFIX}-main-{owner} {' '.join(argv)[:80]}"


def network() -> Snapshot:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        addresses = {
            f"{links.get(a['index'], a['index'])} {a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr()
        }
        routes = {
            f"table={r.get_attr('RTA_TABLE')} dst={r.get_attr('RTA_DST')}/{r['dst_len']} "
            f"gw={r.get_attr('RTA_GATEWAY')} dev={links.get(r.get_attr('RTA_OIF'))}"
            for family in (2, 10)
            for r in ipr.get_routes(family=family)
        }
    return {"links": {f"{i} {name}" for i, name in links.items()}, "addresses": addresses, "routes": routes}


def difference(before: Snapshot, after: Snapshot) -> dict[str, dict[str, list[str]]]:
    """Per aspect, what appeared and what vanished, leaving out the doings of other runs.

    An object another live process owns appeared by its doing; a harness object that existed
    before this session began and is gone now was another run's, removed by that run.
    """
    changes = {}
    for aspect in sorted(set(before) | set(after)):
        old, new = before.get(aspect, set()), after.get(aspect, set())
        added = sorted(x for x in new - old if not naming.foreign(x))
        removed = sorted(x for x in old - new if naming.owner_of(x) in (None, os.getpid()))
        if added or removed:
            changes[aspect] = {"added": added, "removed": removed}
    return changes


def split_runtime_findings(changes: dict[str, dict[str, list[str]]]) -> tuple[dict, dict]:
    """(the harness's traces, the runtime's own leftovers) for a run against a profile's runtime."""
    runtime = {k: v for k, v in changes.items() if k in RUNTIME_ASPECTS}
    harness = {k: v for k, v in changes.items() if k not in RUNTIME_ASPECTS}
    return harness, runtime
