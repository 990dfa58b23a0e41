"""The host audit of one run: what its journals say it made and did not remove, and what else changed.

- `left`: each object this run's journals (the controller's, its workers', its helpers') list as
  made and not removed, still on the host as recorded: the run fails for it, and it is named.
- `runtime_left`: what appeared on the host during the run and carries the run's id without being
  in its journals: made by a runtime for the run (a container's cgroup, a state directory).
  Reported, not failed: it is the runtime's finding.
- `changed_meanwhile`: every other difference between the host before and after the run: another
  process's doing as far as this run's journals know. Reported, not failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nsconform.hygiene import journal, objects
from nsconform.inside import probe

Snapshot = dict[str, set[str]]
Changes = dict[str, dict[str, list[str]]]
SYSCTLS = (
    "kernel/hostname",
    "kernel/domainname",
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/ping_group_range",
    "user/max_user_namespaces",
)


def snapshot() -> Snapshot:
    """The host as a set of short strings per aspect, for what changed during a run."""
    uts = probe.uts()
    mounts = {f"{row[2]} {row[3]} {row[4]}" for row in probe.mountinfo()}
    return {
        "uts": {f"hostname={uts['hostname']}", f"domainname={uts['domainname']}"},
        "mounts": mounts,
        "sysvipc": {f"{kind} key={key:#x}" for kind, rows in probe.sysvipc().items() for key, _ in rows},
        "dev_shm": set(listing("/dev/shm")),
        "dev_mqueue": set(listing("/dev/mqueue")),
        "netns": set(listing("/run/netns")),
        "tmp": set(listing("/tmp")),
        "sysctls": {f"{name}={read(Path('/proc/sys', name))}" for name in SYSCTLS},
        "cgroups": set(cgroup_dirs()),
        **network(),
        **reach(),
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


def reach() -> Snapshot:
    """What the devices, knobs and sockets areas look at on the host: the knobs' values, the device nodes under
    /dev (but the ptys of /dev/pts, which come and go with every terminal), the listening Unix sockets."""
    from nsconform.host import sockdiag
    from nsconform.inside.areas import devices
    from nsconform.reach import knobs

    nodes = devices.device_nodes()["nodes"]
    return {
        "knobs": set(knobs.host_values()),
        "devices": {f"{n[0]} {n[1]} {n[2]}:{n[3]} {n[4]:o} {n[5]}:{n[6]}" for n in nodes if "/pts/" not in n[0]},
        "unix_listeners": {listener.path for listener in sockdiag.listening().values()},
    }


def difference(before: Snapshot, after: Snapshot) -> Changes:
    """Per aspect, what appeared and what vanished."""
    changes = {}
    for aspect in sorted(set(before) | set(after)):
        old, new = before.get(aspect, set()), after.get(aspect, set())
        if old != new:
            changes[aspect] = {"added": sorted(new - old), "removed": sorted(old - new)}
    return changes


def left_by(written: list[journal.Written]) -> tuple[list[str], list[str]]:
    """What these journals list as made, not removed and still there; and what could not be judged."""
    left, problems = [], []
    for one in written:
        owner = objects.Owner.of(one.header)
        for entry in one.left:
            try:
                if objects.present(entry, owner):
                    left.append(f"{objects.describe(entry)} (process {owner.pid}, {one.header['role']})")
            except objects.Replaced:
                continue  # another object in its place: this run's is gone
            except objects.Unverifiable as e:
                problems.append(f"{objects.describe(entry)}: {e}")
    return left, problems


def split(changes: Changes, run: str, journaled: set[str]) -> tuple[Changes, Changes]:
    """(what carries the run's id, not being a journaled object: a runtime's leftovers for the run, every
    other change)."""
    runtime: Changes = {}
    other: Changes = {}
    for aspect, diff in changes.items():
        for sign, entries in diff.items():
            for entry in entries:
                if any(name in entry for name in journaled):
                    continue  # the harness's own object: judged by its journal
                target = runtime if run in entry else other
                target.setdefault(aspect, {"added": [], "removed": []})[sign].append(entry)
    return runtime, other


def judge(run: str, before: Snapshot) -> dict[str, Any]:
    """The audit of run `run`, whose host looked like `before` when it began."""
    written, unreadable = journal.of_run(run)
    left, unjudged = left_by(written)
    journaled = {os.path.basename(entry.name) for one in written for entry in one.entries if entry.name}
    runtime, meanwhile = split(difference(before, snapshot()), run, journaled)
    return {"left": left, "runtime_left": runtime, "changed_meanwhile": meanwhile, "unjudged": unreadable + unjudged}
