"""User namespace: root inside is an unprivileged uid outside, mapped exactly as declared, powerful only inside."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil
import pytest

from nsconform.escapes import (
    ATTACH_PREMISE,
    HANDLES,
    NAMESPACE_FILES,
    expect_no_foreign_namespace_file,
    expect_no_inherited_handle,
)
from nsconform.guarantees import Verdict, guarantee, skip_nothing
from nsconform.host.observe import Host, not_inside
from nsconform.runtimes.declared import Expect
from nsconform.sandbox.sandbox import Sandbox


@guarantee("user", "any", references=["user_namespaces(7)"])
def test_namespace_identity(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox has a user namespace of its own exactly when user is isolated."""
    verdict.identity("user", sandbox, host)


def outside_id(inside: int, id_map: Iterable[Sequence[int]]) -> int | None:
    """The host id that `inside` maps to under `id_map` (lines: inside, outside, count), or None."""
    for first, outside, count in id_map:
        if first <= inside < first + count:
            return outside + inside - first
    return None


def require_root_inside(sandbox: Sandbox) -> dict:
    ident = sandbox.probe("identity")
    if ident["uid"] != 0:
        pytest.skip(f"the probe runs as uid {ident['uid']} inside, not as root: nothing to map from root")
    return ident


@guarantee("user", "isolated", declares=["uid_map", "gid_map"])
def test_id_maps_as_declared(sandbox: Sandbox, host: Host, verdict: Verdict, declared: Expect) -> None:
    """The sandbox's uid_map and gid_map, read inside, are exactly the lines its runtime declares."""
    wanted = {"uid_map": declared.uid_map, "gid_map": declared.gid_map}
    verdict.require_own_namespace("user", sandbox, host)
    seen = sandbox.probe("id_maps")
    for name, lines in wanted.items():
        if lines is not None:
            verdict.expect(
                seen[name] == [list(line) for line in lines],
                f"the sandbox's {name} is not the one its runtime declares",
                **{f"{name} inside": seen[name], f"{name} declared": [list(line) for line in lines]},
            )


@guarantee("user", "isolated", host_view="it reads the host uids of the probe's process")
def test_root_is_not_host_root(sandbox: Sandbox, verdict: Verdict) -> None:
    """Root (uid 0) inside the sandbox is not uid 0 on the host."""
    require_root_inside(sandbox)
    process = psutil.Process(sandbox.pid)
    uids, gids = process.uids(), process.gids()
    verdict.expect(
        0 not in uids,
        "root inside the sandbox is root on the host",
        host_uids=list(uids),
        host_gids=list(gids),
    )


@guarantee("user", "isolated", host_view="it gives a host dir to the host uid of the probe's process")
def test_file_owner_mapped(sandbox: Sandbox, host: Host, verdict: Verdict, declared: Expect) -> None:
    """A file root creates inside is owned on the host by the uid and gid that root maps to, never by root."""
    # 1. a scratch dir on the host given to the probe's host uid (removed after)
    # 2. root inside creates a file there; 3. EXPECT its host owner to be root's mapped ids (as the
    #    runtime declares them, else as uid_map/gid_map inside say), and not uid 0
    ident = require_root_inside(sandbox)
    maps = sandbox.probe("id_maps")
    uid_map = declared.uid_map or maps["uid_map"]
    gid_map = declared.gid_map or maps["gid_map"]
    mapped = (outside_id(ident["uid"], uid_map), outside_id(ident["gid"], gid_map))
    process = psutil.Process(sandbox.pid)
    with host.scratch_dir("owner", owner=(process.uids().effective, process.gids().effective)) as parent:
        path = os.path.join(parent, "made-inside")
        try:
            sandbox.probe("create_file", path=path)
        except FileNotFoundError:
            pytest.skip(not_inside(parent))
        owner = host.probe("file_stat", path=path)
    verdict.expect(
        (owner["uid"], owner["gid"]) == mapped and owner["uid"] != 0,
        "a file created by root inside is not owned on the host by root's mapped, unprivileged ids",
        host_owner=[owner["uid"], owner["gid"]],
        mapped_ids=list(mapped),
    )


@guarantee("user", "isolated", rootful=True)
def test_host_root_file_unreadable(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """Root inside cannot read a host file that only host root may read (mode 0600)."""
    with host.private_file("secret") as path:
        try:
            sandbox.probe("read_file", path=path)
            result = "read"
        except PermissionError as e:
            result = errno.errorcode[e.errno]
        except FileNotFoundError:
            pytest.skip(not_inside(os.path.dirname(path)))
    verdict.expect(
        result != "read", "root inside read a root-only 0600 file of the host", file=path, read_result=result
    )


def host_root_process() -> int | None:
    """A host process that runs as root: this harness process if it is root, else the host's init if root."""
    if os.geteuid() == 0:
        return os.getpid()
    try:
        return 1 if psutil.Process(1).uids().real == 0 else None
    except psutil.Error:
        return None


@guarantee("user", "isolated", needs_shared=["pid"])
def test_host_root_process_unsignalable(sandbox: Sandbox, verdict: Verdict) -> None:
    """Root inside cannot signal a host root process it can see (signal 0: nothing is ever delivered)."""
    require_root_inside(sandbox)
    target = host_root_process()
    if target is None:
        pytest.skip("no host process runs as root here (neither the harness nor pid 1) to aim signal 0 at")
    result = sandbox.probe("signal", pid=target, sig=0)
    if result == errno.ESRCH:
        pytest.skip("the host process is invisible inside (ESRCH) though PID is shared: a PID matter, not a user one")
    verdict.expect(
        result == errno.EPERM,
        "root inside may signal a host root process",
        host_pid=target,
        kill_result=errno.errorcode.get(result, result),
    )


@guarantee("user", "isolated", needs_shared=["uts"])
def test_shared_hostname_unchangeable(sandbox: Sandbox, verdict: Verdict) -> None:
    """With UTS shared, root inside may not set the hostname (EPERM)."""
    # The probe sets the hostname to its current value, so that even a leaky sandbox changes nothing.
    current = sandbox.probe("uts")["hostname"]
    try:
        sandbox.probe("set_uts", hostname=current)
        result = "set"
    except PermissionError as e:
        result = errno.errorcode[e.errno]
    verdict.expect(
        result == "EPERM",
        "root inside may set the hostname of the host's UTS namespace",
        hostname_written=current,
        sethostname_result=result,
    )


@guarantee(
    "user",
    "isolated",
    references=["CVE-2014-8989", "user_namespaces(7): /proc/PID/setgroups"],
    host_view="it reads the gid_map of the probe's process from the host",
)
def test_setgroups_denied_where_required(sandbox: Sandbox, verdict: Verdict) -> None:
    """Where gid_map maps only the creator's own gid (an unprivileged mapping), setgroups is deny and root
    inside cannot drop its supplementary groups."""
    # 1. the gid_map as the host reads it (inside, a nested user namespace shows its parent's gids, not the host's)
    # 2. SKIP where it maps more than the creator's own gid (dropping groups is then its right): nothing to examine
    # 3. EXPECT setgroups deny inside, and setgroups([]) refused (EPERM)
    gid_map = [[int(x) for x in line.split()] for line in Path(f"/proc/{sandbox.pid}/gid_map").read_text().splitlines()]
    own_gid = os.getegid()  # the runtime runs with the harness's gid: the sandbox's creator
    verdict.note(gid_map_on_host=gid_map)
    if not all(count == 1 and outside == own_gid for _, outside, count in gid_map):
        skip_nothing(
            f"the gid_map (as the host reads it: {gid_map}) maps more than the creator's own gid {own_gid}: "
            "no setgroups deny is required"
        )
    maps = sandbox.probe("id_maps")
    verdict.expect(
        maps["setgroups"] == "deny",
        "setgroups is not deny for a gid_map of the creator's own gid",
        setgroups=maps["setgroups"],
    )
    result = sandbox.probe("drop_groups")
    verdict.expect(
        result == errno.EPERM,
        "root inside dropped its supplementary groups",
        setgroups_result=errno.errorcode.get(result, result),
    )


@guarantee("user", "isolated")
def test_no_capability_over_host(sandbox: Sandbox, verdict: Verdict) -> None:
    """Root inside holds no capability over the host's namespaces: what the kernel allows only with a capability
    in the initial user namespace (swapoff: CAP_SYS_ADMIN, init_module: CAP_SYS_MODULE) is refused."""
    # Which capabilities root holds inside its own namespace is the runtime's hardening, reported as such
    # (the report's runtime.hardening), never a failure: only a capability that reaches the host is one.
    # A call stopped before the kernel judged it (ENOSYS: a seccomp filter, or a kernel of the sandbox's own) says
    # nothing either way: it is evidence, and where every call was stopped so, the check skips.
    require_root_inside(sandbox)
    tried = sandbox.probe("host_privileged")
    results = {f"{call} result": errno.errorcode.get(result, result) for call, result in tried.items()}
    verdict.expect_each(
        {call: result == errno.EPERM for call, result in tried.items() if result != errno.ENOSYS},
        "every privileged call was stopped before the kernel judged it (ENOSYS: a seccomp filter, or a kernel of "
        "the sandbox's own)",
        "root inside holds a capability of the host's initial user namespace",
        **results,
    )


@guarantee("user", "shared")
def test_id_maps_shared(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With user shared, uid_map and gid_map inside are the host's (on a plain host: `0 0 4294967295`)."""
    verdict.expect_equal_fields(sandbox.probe("id_maps"), host.probe("id_maps"), ("uid_map", "gid_map"))


@guarantee("user", "isolated", attach_unsafe=ATTACH_PREMISE, references=HANDLES)
def test_no_inherited_handle(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No fd the sandbox's first process inherited carries the host's credentials: none grants an access that
    opening the same file afresh inside is refused (the kernel refuses setns into an ancestor user namespace)."""
    expect_no_inherited_handle("user", sandbox, host, verdict)


@guarantee("user", "isolated", needs=["mnt"], references=NAMESPACE_FILES)
def test_no_foreign_namespace_file(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No namespace file in the sandbox's mount table (a bound /proc/PID/ns/user, a volume of namespace files) opens
    another user namespace that setns accepts (under --nsc-attach: that the target itself could join)."""
    expect_no_foreign_namespace_file("user", sandbox, host, verdict)
