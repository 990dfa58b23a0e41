"""Cgroup namespace: /proc/self/cgroup shows the sandbox's cgroups relative to its namespace root."""

from __future__ import annotations

from nsconform.escapes import (
    ATTACH_PREMISE,
    HANDLES,
    NAMESPACE_FILES,
    expect_fs_instances_own,
    expect_no_foreign_namespace_file,
    expect_no_inherited_handle,
)
from nsconform.guarantees import Verdict, guarantee, skip_nothing
from nsconform.host.observe import Host
from nsconform.sandbox.sandbox import Sandbox


@guarantee("cgroup", "any", references=["cgroup_namespaces(7)"])
def test_namespace_identity(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox has a cgroup namespace of its own exactly when cgroup is isolated."""
    verdict.identity("cgroup", sandbox, host)


@guarantee(
    "cgroup",
    "isolated",
    attach_unsafe="the probe joins the target's cgroup namespace but not its cgroups (that would change the "
    "target's cgroup membership), so its own cgroups lie outside the namespace root",
    host_view="it reads the cgroups of the probe's process on the host",
)
def test_namespace_root(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """Inside, /proc/self/cgroup shows the sandbox's cgroups as the namespace root `/`, not their host paths."""
    # 1. the host reads the probe's cgroups with their host paths; 2. the probe reads its own
    # 3. EXPECT every path inside to be `/` (a runtime that moves the sandbox after making its namespace
    #    shows `/..`-relative paths, which leak where it sits on the host)
    outside = host.probe("cgroups", pid=sandbox.pid)
    if all(path == "/" for _, _, path in outside):
        skip_nothing("the sandbox sits in the root cgroup of every hierarchy: root and namespace root coincide")
    inside = sandbox.probe("cgroups")
    verdict.expect_each(
        {f"{hierarchy}:{controllers}": path == "/" for hierarchy, controllers, path in inside},
        "/proc/self/cgroup inside lists no cgroup",
        "/proc/self/cgroup inside shows paths above the namespace root",
        cgroups_inside=inside,
        cgroups_on_host=outside,
    )


@guarantee("cgroup", "shared", host_view="it reads the cgroups of the probe's process on the host")
def test_paths_shared(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With cgroup shared, the sandbox sees its cgroups under the same paths as the host does (observed only)."""
    outside = host.probe("cgroups", pid=sandbox.pid)
    inside = sandbox.probe("cgroups")
    if not inside and not outside:
        skip_nothing("neither the host nor the sandbox lists a cgroup of the probe's process")
    verdict.expect(
        inside == outside,
        "/proc/self/cgroup inside differs from the host's view of the same process",
        cgroups_inside=inside,
        cgroups_on_host=outside,
    )


@guarantee("cgroup", "isolated", attach_unsafe=ATTACH_PREMISE, references=HANDLES)
def test_no_inherited_handle(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No fd the sandbox's first process inherited opens the host's cgroup hierarchy: no nsfs handle of its cgroup
    namespace that setns accepts, no directory of a cgroup filesystem above the sandbox's namespace root."""
    expect_no_inherited_handle("cgroup", sandbox, host, verdict)


@guarantee("cgroup", "isolated", needs=["mnt"], references=("cgroup_namespaces(7)", "CVE-2023-25809", "CVE-2022-0492"))
def test_fs_instances_own(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """Where cgroup and mount are isolated, every cgroup filesystem mounted inside, wherever it is mounted, has the
    sandbox's cgroup namespace root at its top, not the hierarchy above it."""
    # 1. ASSERT an own cgroup namespace (in the host's, the host's hierarchy is the sandbox's own view)
    # 2. skip where the sandbox sits in the root cgroup of every hierarchy (the two views coincide)
    # 3. per cgroup filesystem mounted inside: EXPECT its top cgroup to hold the probe
    verdict.require_own_namespace("cgroup", sandbox, host)
    outside = host.probe("cgroups", pid=sandbox.pid)
    if all(path == "/" for _, _, path in outside):
        skip_nothing("the sandbox sits in the root cgroup of every hierarchy: root and namespace root coincide")
    verdict.note(cgroups_on_host=outside)
    expect_fs_instances_own("cgroup", sandbox, host, verdict)


@guarantee("cgroup", "isolated", needs=["mnt"], references=NAMESPACE_FILES)
def test_no_foreign_namespace_file(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No namespace file in the sandbox's mount table (a bound /proc/PID/ns/cgroup, a volume of namespace files) opens
    another cgroup namespace that setns accepts (under --nsc-attach: that the target itself could join)."""
    expect_no_foreign_namespace_file("cgroup", sandbox, host, verdict)
