"""Escape routes beyond namespace identity: what a sandbox holds (the handles its first process inherited) and
what it reaches by path (namespace files and filesystem instances in its mount table), judged.

The probe records every fd it holds when it begins to serve, before it opens one of its own, and
examines each on request by what the kernel lets it do with it (nsconform.inside.probe: setns on an
nsfs handle in a throwaway child, the network namespace of a socket, pidfd_getfd through a pidfd, where
'..' leads from a directory, whose /proc or cgroup hierarchy it shows, whether a fresh open of the same
file is refused). The harness adds what only the host knows: which of those fds are its own channel to
the probe, and which mounts are the host's. Each handle that opens a namespace beyond the sandbox's own
is a finding of that namespace; a usable one is a violation, one the kernel refuses is evidence.
By path, the probe opens every nsfs mount of its mount table and examines it as an nsfs handle, and every
proc, sysfs, mqueue and cgroup mount for whether its instance shows the sandbox's own namespace.
The classes and the breakouts they answer: docs/escapes.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import pytest

from nsconform.guarantees import Verdict, skip_nothing
from nsconform.host.observe import Host
from nsconform.sandbox.sandbox import Sandbox

ATTACH_PREMISE = (
    "the joined probe is not the target's first process: its fds, working directory and root are the "
    "harness's, not the target's"
)
REFUSED = ("EPERM", "EACCES")
# The breakouts through an inherited handle, for every namespace's check of them (docs/escapes.md)
HANDLES = ("CVE-2024-21626", "CVE-2016-9962", "setns(2)")
# The breakouts through a namespace file reachable by path (a volume of /run/netns, `ip netns add` on the host)
NAMESPACE_FILES = ("setns(2)", "ioctl_ns(2)", "ip-netns(8)")
# The filesystems whose instance shows the namespace of whoever mounted it, per namespace
FS_TYPES = {"pid": ("proc",), "net": ("sysfs",), "ipc": ("mqueue",), "cgroup": ("cgroup", "cgroup2")}
CAP_SYS_ADMIN = 21  # the capability setns needs over the owner of the namespace it joins


@dataclass(frozen=True)
class Finding:
    """A handle that opens `namespace` beyond the sandbox's own; `usable` unless the kernel refused its use."""

    namespace: str
    usable: bool
    what: str


def findings(handle: dict[str, Any], host_mounts: set[int]) -> list[Finding]:
    """What one examined handle opens (nothing for pipes and the sandbox's own objects)."""
    fd, link, kind = handle["fd"], handle["link"], handle["kind"]
    if kind == "nsfs":
        if handle["own"] or "setns" not in handle:
            return []
        nstype = handle["nstype"]
        landed = f", landing in {handle['landed']}" if "landed" in handle else ""
        seen = f", where the links are {', '.join(handle['links'])}" if "links" in handle else ""
        what = f"fd {fd} is another {nstype} namespace ({link}): setns in a child: {handle['setns']}{landed}{seen}"
        return [Finding(nstype, handle["setns"] == "ok", what)]
    if kind == "socket":
        return [] if handle["own"] else [Finding("net", True, f"fd {fd} is a socket of another network namespace")]
    if kind == "pidfd":
        if handle["signal"] != "EINVAL":  # the kernel's word that its process is outside this PID namespace
            return []
        what = f"fd {fd} is a pidfd of a process outside the sandbox's PID namespace: pidfd_getfd {handle['getfd']}"
        return [Finding("pid", handle["getfd"] == "ok", what)]
    if kind not in ("dir", "file"):
        return []
    return path_findings(handle, host_mounts)


def path_findings(handle: dict[str, Any], host_mounts: set[int]) -> list[Finding]:
    """A directory or file: the host's mount tree, another PID namespace's /proc, a cgroup hierarchy above
    the namespace root, or an access the host's credentials granted."""
    fd, link = handle["fd"], handle["link"]
    usable = "ok" in (handle["through"], handle["fresh"])
    found = []
    if handle.get("fs") == "proc" and handle["proc_self"] != str(handle["pid"]):
        shown = f"'self' there is {handle['proc_self'] or 'absent'}, here {handle['pid']}"
        found.append(Finding("pid", usable, f"fd {fd} ({link}) is the /proc of another PID namespace ({shown})"))
    if handle.get("lists_probe") is False:
        found.append(Finding("cgroup", usable, f"fd {fd} ({link}) shows cgroups above the cgroup namespace root"))
    if outside(handle, host_mounts):
        found.append(Finding("mnt", usable, f"fd {fd} ({link}) is {where(handle, host_mounts)}"))
    if handle["through"] == "ok" and handle["fresh"] in REFUSED:
        what = f"fd {fd} ({link}) grants an access a fresh open refuses ({handle['fresh']}): the host's credentials"
        found.append(Finding("user", True, what))
    return found


def outside(handle: dict[str, Any], host_mounts: set[int]) -> bool:
    """A directory or file beyond the sandbox's root, or on a mount of the host's that the sandbox does not have."""
    return bool(handle.get("outside_root")) or (not handle["own_mount"] and handle["mnt_id"] in host_mounts)


def where(handle: dict[str, Any], host_mounts: set[int]) -> str:
    parts = []
    if not handle["own_mount"] and handle["mnt_id"] in host_mounts:
        parts.append(f"on mount {handle['mnt_id']} of the host's mount namespace")
    if handle.get("outside_root"):
        parts.append(f"outside the sandbox's root ('..' leads to {handle['top']}, the root is {handle['root']})")
    return " and ".join(parts)


def host_mount_ids(host: Host) -> set[int]:
    return {row[0] for row in host.probe("mountinfo")}


@dataclass(frozen=True)
class Inheritance:
    """What a sandbox's first process inherited (its channel to the harness aside), and what each of it opens."""

    fds: list[str]
    findings: list[Finding]


INHERITED: WeakKeyDictionary[Sandbox, Inheritance] = WeakKeyDictionary()  # one examination per sandbox


def inheritance(sandbox: Sandbox, host: Host) -> Inheritance:
    """The sandbox's inherited handles, examined once: they are fixed when its probe begins to serve."""
    if sandbox not in INHERITED:
        try:
            handles = sandbox.probe("inherited_handles")
        except FileNotFoundError as e:
            pytest.skip(f"the probe could not list the fds it inherited ({e.strerror})")
        channel = sandbox.channel()
        inherited = [h for h in handles if (h["dev"], h["ino"]) not in channel]
        host_mounts = host_mount_ids(host) if any(h["kind"] in ("dir", "file") for h in inherited) else set()
        found = [f for handle in inherited for f in findings(handle, host_mounts)]
        INHERITED[sandbox] = Inheritance([f"{h['fd']} {h['link']}" for h in inherited], found)
    return INHERITED[sandbox]


def expect_no_inherited_handle(ns: str, sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """EXPECT no fd the probe inherited (its channel to the harness aside) to open the host's `ns` namespace usably.

    ASSERT first an own `ns` namespace: in the host's, a handle of the host's namespace is the sandbox's own.
    SKIP where nothing beyond the harness's channel was inherited: there is no handle to examine."""
    verdict.require_own_namespace(ns, sandbox, host)
    inherited = inheritance(sandbox, host)
    if not inherited.fds:
        skip_nothing("the sandbox's first process inherited no fd beyond its channel to the harness")
    found = [f for f in inherited.findings if f.namespace == ns]
    verdict.note(inherited_fds=inherited.fds, refused=[f.what for f in found if not f.usable])
    verdict.expect(
        all(not f.usable for f in found),
        f"the sandbox's first process inherited handles that open the host's {ns} namespace",
        usable=[f.what for f in found if f.usable],
    )


def expect_cwd_and_root_inside(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """EXPECT the probe's working directory and root inside the sandbox's root and (own) mount namespace."""
    verdict.require_own_namespace("mnt", sandbox, host)
    seen = sandbox.probe("cwd_and_root")
    host_mounts = host_mount_ids(host)
    for name, facts in seen.items():
        verdict.expect(
            facts["own_mount"] and not outside(facts, host_mounts),
            f"the {'working directory' if name == 'cwd' else 'root'} of the sandbox's first process is "
            f"{where(facts, host_mounts) or 'on a mount the sandbox does not have'}",
            **{name: facts["link"], f"{name} mount": facts["mnt_id"]},
        )


FILES: WeakKeyDictionary[Sandbox, list[dict[str, Any]]] = WeakKeyDictionary()  # one examination per sandbox


def namespace_files(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The nsfs mounts of the sandbox's mount table, examined once (nsconform.inside.probe.namespace_files)."""
    if sandbox not in FILES:
        FILES[sandbox] = sandbox.probe("namespace_files")
    return FILES[sandbox]


def target_refusal(facts: dict[str, Any], sandbox: Sandbox) -> str:
    """Under --nsc-attach, why the target's own credentials could not join what the joined probe (root with the
    harness's capabilities) joined: no CAP_SYS_ADMIN in its effective set, or a user namespace that is neither the
    namespace's owner nor an ancestor of that owner. Empty where they could, or where the sandbox is no target."""
    target = sandbox.hello.get("attached")
    if not sandbox.joined or not isinstance(target, int):
        return ""
    status = Path(f"/proc/{target}/status").read_text()
    caps = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
    if not caps >> CAP_SYS_ADMIN & 1:
        return f"the target (pid {target}) holds no CAP_SYS_ADMIN (CapEff {caps:016x})"
    user = sandbox.ns_inode("user")
    if user is None or list(user) not in facts.get("owners", []):
        return f"the target's user namespace ({user and user[1]}) is neither its owner nor an ancestor of that owner"
    return ""


def file_finding(facts: dict[str, Any], sandbox: Sandbox, host: Host) -> tuple[bool, str]:
    """(usable, what): one namespace file of another namespace, as a reader of the report needs it."""
    nstype, path = facts["nstype"], facts["path"]
    if "open" in facts:
        return False, f"{path} ({facts['link']}): not reachable by its path ({facts['open']})"
    whose = "the host's" if tuple(facts["ns"]) == host.ns_inode(nstype) else "another"
    own = sandbox.ns_inode(nstype)
    what = (
        f"{path} is {whose} {nstype} namespace ({facts['link']}; the sandbox's is {nstype}:[{own and own[1]}]): "
        f"setns in a child: {facts['setns']}"
    )
    what += f", landing in {facts['landed']}" if "landed" in facts else ""
    what += f", where the links are {', '.join(facts['links'])}" if "links" in facts else ""
    if facts["setns"] != "ok":
        return False, what
    refusal = target_refusal(facts, sandbox)
    return (False, f"{what}; but {refusal}") if refusal else (True, what)


def expect_no_foreign_namespace_file(ns: str, sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """EXPECT no nsfs mount in the sandbox's mount table to open an `ns` namespace other than its own that setns
    accepts (under --nsc-attach: that the target's own credentials could join); a refused one is evidence."""
    # 1. ASSERT an own `ns` namespace (in the host's, the host's namespace file is the sandbox's own)
    # 2. the probe opens every nsfs mount by its path and tries setns on it in a throwaway child
    # 3. SKIP where no `ns` namespace file is mounted; EXPECT none of another namespace usable
    verdict.require_own_namespace(ns, sandbox, host)
    files = [f for f in namespace_files(sandbox) if f["nstype"] == ns]
    if not files:
        skip_nothing(f"no {ns} namespace file is mounted in the sandbox's mount table")
    judged = [file_finding(f, sandbox, host) for f in files if not f.get("own")]
    verdict.note(
        namespace_files=[f"{f['path']} {f['link']}" for f in files],
        refused=[what for usable, what in judged if not usable],
    )
    verdict.expect(
        all(not usable for usable, _ in judged),
        f"a namespace file in the sandbox's mount table opens another {ns} namespace",
        usable=[what for usable, what in judged if usable],
    )


def expect_fs_instances_own(ns: str, sandbox: Sandbox, host: Host, verdict: Verdict, queue: str = "") -> None:
    """EXPECT every mount of `ns`'s filesystems (FS_TYPES), wherever it is mounted, to show the sandbox's own `ns`
    namespace; SKIP where none is mounted (or none can be opened)."""
    # 1. ASSERT an own `ns` namespace (in the host's, the host's instance is the sandbox's own)
    # 2. the probe opens each such mount and asks its instance what it shows (nsconform.inside.probe.fs_instances)
    # 3. EXPECT each to show the sandbox's own namespace
    verdict.require_own_namespace(ns, sandbox, host)
    fstypes = FS_TYPES[ns]
    seen = sandbox.probe("fs_instances", fstypes=list(fstypes), queue=queue)
    verdict.note(not_examined={f["path"]: f["open"] for f in seen if "open" in f})
    verdict.expect_each(
        {f["path"]: f["own"] for f in seen if "own" in f},
        f"no {' or '.join(fstypes)} filesystem is mounted in the sandbox (or none can be opened)",
        f"a {'/'.join(fstypes)} filesystem inside shows another {ns} namespace",
        shown={f["path"]: f.get("shows") for f in seen if "own" in f},
    )
