"""Mount namespace: mounts made on either side stay there, propagation included, and /proc is the sandbox's own."""

from __future__ import annotations

import errno

import pytest

from nsconform.escapes import (
    ATTACH_PREMISE,
    HANDLES,
    NAMESPACE_FILES,
    expect_cwd_and_root_inside,
    expect_no_foreign_namespace_file,
    expect_no_inherited_handle,
)
from nsconform.guarantees import Verdict, guarantee
from nsconform.host import mounts
from nsconform.host.mounts import MountScratch
from nsconform.host.observe import Host, not_inside
from nsconform.hygiene import naming
from nsconform.runtimes.declared import Expect
from nsconform.sandbox.sandbox import Sandbox

SHARED_SUBTREES = "Linux kernel documentation: Shared Subtrees"


@guarantee("mnt", "any", references=["mount_namespaces(7)"])
def test_namespace_identity(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox has a mount namespace of its own exactly when mount is isolated."""
    verdict.identity("mnt", sandbox, host)


@guarantee("mnt", "isolated")
def test_mount_hidden_from_host(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """A tmpfs mounted inside the sandbox does not appear in the host's mount table."""
    # 1. ASSERT an own mount namespace; 2. mount a tmpfs with a unique source name inside, on a scratch dir
    # 3. EXPECT it in the sandbox's mountinfo (by its source, or its mount point where the sandbox's kernel keeps
    #    no source name: gVisor) and neither in the host's; 4. unmount it inside
    verdict.require_own_namespace("mnt", sandbox, host)
    with host.scratch_dir("mnt") as target:
        source = naming.unique("in")
        try:
            mount_inside(sandbox, target, source)
        except FileNotFoundError:
            pytest.skip(not_inside(target))
        try:
            inside = sandbox.probe("mountinfo")
            verdict.require(
                source in mounts.sources(inside) or target in mounts.mount_points(inside),
                "the tmpfs mounted inside is not there inside",
            )
            outside = host.probe("mountinfo")
            verdict.expect(
                source not in mounts.sources(outside) and target not in mounts.mount_points(outside),
                "a tmpfs mounted inside the sandbox is in the host's mount table",
                mounted_inside=source,
                target=target,
            )
        finally:
            sandbox.probe("unmount", target=target)


def mount_inside(sandbox: Sandbox, target: str, source: str) -> None:
    try:
        sandbox.probe("mount_tmpfs", target=target, source=source)
    except PermissionError:
        pytest.skip("the sandbox may not mount a tmpfs (EPERM): only the namespace identity is evidence")


@pytest.fixture
def scratch(mount_scratch: MountScratch) -> MountScratch:
    """The harness's own shared and held mount points, or a skip saying why there are none."""
    if mount_scratch.unavailable:
        pytest.skip(mount_scratch.unavailable)
    return mount_scratch


def require_visible_inside(path: str, sandbox: Sandbox) -> None:
    """Skip unless the harness's mount point is in the sandbox's table and reachable (not mounted over)."""
    try:
        sandbox.probe("file_stat", path=path)
    except FileNotFoundError:
        pytest.skip(not_inside(path))
    if path not in mounts.mount_points(sandbox.probe("mountinfo")):
        if sandbox.joined:
            why = "the target's mount namespace was made before the harness made its mount points"
        elif sandbox.own_kernel:
            why = "the sandbox's own kernel serves the volume as one file system, without the mounts under it"
        else:
            why = "the runtime brought the volume in without the mounts under it"
        pytest.skip(f"the harness's mount point {path} is inside, but not in the sandbox's mount table: {why}")


@guarantee(
    "mnt", "isolated", rootful=True, attach_unsafe="it unmounts a mount inside the target and cannot put it back"
)
def test_unmount_stays_inside(sandbox: Sandbox, host: Host, verdict: Verdict, scratch: MountScratch) -> None:
    """Unmounting, inside the sandbox, a mount the host holds leaves the host's mount in place."""
    # 1. ASSERT an own mount namespace; the host held a tmpfs before the sandbox started
    # 2. unmount the sandbox's copy inside; 3. EXPECT it gone inside and still mounted on the host
    verdict.require_own_namespace("mnt", sandbox, host)
    require_visible_inside(scratch.held, sandbox)
    try:
        sandbox.probe("unmount", target=scratch.held)
    except PermissionError:
        pytest.skip("the sandbox may not unmount (EPERM): only the namespace identity is evidence")
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        pytest.skip(
            "the sandbox may not unmount a mount it got from the host (EINVAL: its mount namespace "
            "belongs to a user namespace of its own, which locks inherited mounts)"
        )
    verdict.require(
        scratch.held_source not in mounts.sources(sandbox.probe("mountinfo")),
        "the tmpfs unmounted inside is still there inside",
    )
    verdict.expect(
        scratch.held_source in mounts.sources(host.probe("mountinfo")),
        "unmounting inside the sandbox removed the host's mount",
        unmounted_inside=scratch.held,
        source=scratch.held_source,
    )


@guarantee("mnt", "isolated", needs=["pid"])
def test_fresh_proc(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With PID and mount isolated, /proc inside is a proc instance of its own, not the host's."""
    inside, outside = sandbox.probe("file_stat", path="/proc"), host.probe("file_stat", path="/proc")
    verdict.expect(
        inside["dev"] != outside["dev"],
        "/proc inside is the host's proc instance (same device)",
        proc_device_inside=inside["dev"],
        proc_device_on_host=outside["dev"],
    )
    ident = sandbox.probe("identity")
    verdict.expect(
        ident["proc_self"] == str(ident["pid"]),
        "/proc/self inside names a pid of another namespace",
        proc_self=ident["proc_self"],
        pid_inside=ident["pid"],
    )


@guarantee("mnt", "isolated", rootful=True, references=[SHARED_SUBTREES])
def test_mount_inside_does_not_propagate(sandbox: Sandbox, host: Host, verdict: Verdict, scratch: MountScratch) -> None:
    """A mount made inside, under a mount point the host shares (MS_SHARED), does not reach the host."""
    # 1. ASSERT an own mount namespace; the harness made its shared mount point before the sandbox started
    # 2. inside, mount a tmpfs under it; 3. EXPECT it absent from the host's table; 4. unmount it inside
    verdict.require_own_namespace("mnt", sandbox, host)
    require_visible_inside(scratch.shared, sandbox)
    with mounts.subdir(scratch.shared) as target:
        source = naming.unique("in")
        mount_inside(sandbox, target, source)
        try:
            verdict.expect(
                source not in mounts.sources(host.probe("mountinfo")),
                "a mount made inside under a shared mount point propagated to the host",
                shared_point=scratch.shared,
                mounted_inside=source,
            )
        finally:
            sandbox.probe("unmount", target=target)


@guarantee("mnt", "isolated", rootful=True, references=[SHARED_SUBTREES])
def test_host_mount_does_not_propagate(
    sandbox: Sandbox, host: Host, verdict: Verdict, scratch: MountScratch, declared: Expect
) -> None:
    """A mount the host makes under its shared mount point after the start is not seen inside (unless the
    runtime declares slave propagation, when it must be)."""
    # 1. ASSERT an own mount namespace; 2. the host mounts a tmpfs under its shared point (removed after)
    # 3. EXPECT it absent inside, or present where the runtime declares `propagation = "slave"`
    verdict.require_own_namespace("mnt", sandbox, host)
    require_visible_inside(scratch.shared, sandbox)
    slave = declared.propagation == "slave"
    with mounts.subdir(scratch.shared) as target, mounts.tmpfs_on(target) as source:
        seen = source in mounts.sources(sandbox.probe("mountinfo"))
        verdict.expect(
            seen == slave,
            "a host mount made after the start "
            + ("did not reach the sandbox, whose runtime declares slave propagation" if slave else "appeared inside"),
            shared_point=scratch.shared,
            mounted_on_host=source,
            declared_propagation="slave" if slave else "private",
        )


def mount_rows(table: list[list]) -> set[str]:
    """A mount table as one string a mount: id, parent id, mount point, type, source, propagation."""
    return {
        " ".join([str(mount_id), str(parent), point, fstype, source, *tags])
        for mount_id, parent, point, fstype, source, tags in table
    }


@guarantee("mnt", "shared")
def test_mount_table_shared(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With mount shared, the sandbox's mount table is the host's (observed, never changed)."""
    inside = sandbox.probe("mountinfo")
    verdict.note(mounts_on_host=len(host.probe("mountinfo")), mounts_inside=len(inside))
    verdict.expect_shared_view(
        "mounts", lambda: mount_rows(sandbox.probe("mountinfo")), lambda: mount_rows(host.probe("mountinfo"))
    )


@guarantee("mnt", "isolated", attach_unsafe=ATTACH_PREMISE, references=HANDLES)
def test_no_inherited_handle(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No fd the sandbox's first process inherited leads into the host's mount namespace: no nsfs handle of it
    that setns accepts, no directory or file on the host's mounts or beyond the sandbox's root."""
    expect_no_inherited_handle("mnt", sandbox, host, verdict)


@guarantee("mnt", "isolated", attach_unsafe=ATTACH_PREMISE, references=("CVE-2024-21626", "CVE-2016-9962"))
def test_cwd_and_root_inside(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The working directory and the root of the sandbox's first process lie inside the sandbox's root and on its
    own mounts (a working directory left on the host's, as in CVE-2024-21626, leads out with '..')."""
    expect_cwd_and_root_inside(sandbox, host, verdict)


@guarantee("mnt", "isolated", needs=["mnt"], references=NAMESPACE_FILES)
def test_no_foreign_namespace_file(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No namespace file in the sandbox's mount table (a bound /proc/PID/ns/mnt, a volume of namespace files) opens
    another mount namespace that setns accepts (under --nsc-attach: that the target itself could join)."""
    expect_no_foreign_namespace_file("mnt", sandbox, host, verdict)
