"""Escape routes beyond namespace identity (docs/escapes.md): each class, made by a leaky native launcher, is
reported violated in exactly the namespace it opens; a handle the kernel refuses to let the sandbox use is
evidence in a passing check; the judgement of a handle leaves the harness's own channel out."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from nsconform.escapes import ATTACH_PREMISE, FS_TYPES, findings
from nsconform.namespaces import ALL
from nsconform.runtimes.runtime import PROFILES_DIR
from nsconform.sandbox.native import NativeRuntime
from tests.conftest import ROOT, check_node, host_mount_table, host_namespace_file
from tests.test_negative_controls import catalogue
from tests.test_runtimes import require

CHECKS = str(ROOT / "isolation_checks")

CLASSES = {  # leak of the launcher -> (--nsc-namespaces of the run, the namespace it opens, the check that says so)
    # inherited handles
    "nsfs_net": ("net", "net", "net.no_inherited_handle"),
    "nsfs_ipc": ("ipc", "ipc", "ipc.no_inherited_handle"),
    "nsfs_uts": ("uts", "uts", "uts.no_inherited_handle"),
    "nsfs_mnt": ("mnt", "mnt", "mnt.no_inherited_handle"),
    "nsfs_cgroup": ("cgroup", "cgroup", "cgroup.no_inherited_handle"),
    "nsfs_time": ("time", "time", "time.no_inherited_handle"),
    "host_socket": ("net", "net", "net.no_inherited_handle"),
    "host_root_fd": ("mnt", "mnt", "mnt.no_inherited_handle"),
    "host_proc_fd": ("pid,mnt", "pid", "pid.no_inherited_handle"),
    "host_pidfd": ("pid", "pid", "pid.no_inherited_handle"),
    "host_dir": ("user", "user", "user.no_inherited_handle"),
    "host_cgroup_fd": ("cgroup,mnt", "cgroup", "cgroup.no_inherited_handle"),
    "host_cwd": ("mnt", "mnt", "mnt.cwd_and_root_inside"),
    "host_root_dir": ("mnt", "mnt", "mnt.cwd_and_root_inside"),
    # views from the wrong namespace (the host's /proc, leak host_proc, predates these: pid and mnt checks answer it),
    # where the sandbox's own were (host_sysfs, host_cgroupfs) or at another path (host_mqueue, the *_at ones)
    "host_sysfs": ("net,mnt", "net", "net.fs_instances_own"),
    "host_mqueue": ("ipc,mnt", "ipc", "ipc.fs_instances_own"),
    "host_cgroupfs": ("cgroup,mnt", "cgroup", "cgroup.fs_instances_own"),
    "host_proc_at": ("pid,mnt", "pid", "pid.fs_instances_own"),
    "host_sysfs_at": ("net,mnt", "net", "net.fs_instances_own"),
    "host_cgroupfs_at": ("cgroup,mnt", "cgroup", "cgroup.fs_instances_own"),
    # namespace files by path
    "ns_file_net": ("net,mnt", "net", "net.no_foreign_namespace_file"),
    "ns_file_ipc": ("ipc,mnt", "ipc", "ipc.no_foreign_namespace_file"),
    "ns_file_uts": ("uts,mnt", "uts", "uts.no_foreign_namespace_file"),
    "ns_file_mnt": ("mnt", "mnt", "mnt.no_foreign_namespace_file"),
    "ns_file_cgroup": ("cgroup,mnt", "cgroup", "cgroup.no_foreign_namespace_file"),
    "ns_file_time": ("time,mnt", "time", "time.no_foreign_namespace_file"),
}
# handles the kernel refuses to let the sandbox use: leak -> (--nsc-namespaces, the check whose evidence says so)
REFUSED = {
    "nsfs_user": ("user", "user.no_inherited_handle"),  # no setns into an ancestor user namespace
    "nsfs_pid": ("pid", "pid.no_inherited_handle"),  # no setns into an ancestor PID namespace
    "nsfs_net": ("net,user", "net.no_inherited_handle"),  # no CAP_SYS_ADMIN over the host's network namespace
    "host_pidfd": ("pid,user", "pid.no_inherited_handle"),  # no ptrace access to a host process
    "ns_file_pid": ("pid,mnt", "pid.no_foreign_namespace_file"),  # by path: no setns into an ancestor PID namespace
    "ns_file_user": ("user,mnt", "user.no_foreign_namespace_file"),  # nor into an ancestor user namespace
    "ns_file_uts": ("uts,user,mnt", "uts.no_foreign_namespace_file"),  # no CAP_SYS_ADMIN over the host's UTS one
}


@pytest.mark.parametrize("leak", CLASSES)
def test_escape_violates_exactly_the_namespace_it_opens(leak: str, run_suite) -> None:
    """Every check of the run's namespaces, over all their combinations, on a launcher with this one leak."""
    namespaces, opened, check = CLASSES[leak]
    run = run_suite("--nsc-namespaces", namespaces, CHECKS, runtime=NativeRuntime(leaks=frozenset({leak})))
    expected = {ns: "violated" if ns == opened else "conformant" for ns in namespaces.split(",")}
    failed = [r["id"] for r in run.report["results"] if r["outcome"] not in ("passed", "skipped")]
    assert run.verdicts() == expected, failed
    assert "failed" in run.outcomes(check).values(), failed


@pytest.mark.parametrize("leak", REFUSED)
def test_refused_handle_is_evidence_in_a_pass(leak: str, run_suite) -> None:
    """The check passes on the combination of all the run's namespaces, and names the refused handle."""
    namespaces, check = REFUSED[leak]
    combination = "+".join(sorted(namespaces.split(",")))
    node = check_node(check, combination)
    run = run_suite("--nsc-namespaces", namespaces, node, runtime=NativeRuntime(leaks=frozenset({leak})))
    assert run.outcomes(check) == {combination: "passed"}, run.output
    assert run.report["results"][0]["evidence"]["refused"], run.report["results"]


def test_every_escape_check_has_a_class() -> None:
    """Every namespace has its inherited-handle and namespace-file checks; each of those (but the namespace files of
    pid and user, which the kernel never lets a sandbox join: REFUSED), every filesystem-instance check, and every
    check of the table, is shown failing by a class."""
    checks = catalogue()
    shown = {check for _, _, check in CLASSES.values()}
    handles = {name for name, spec in checks.items() if spec.attach_unsafe == ATTACH_PREMISE}
    files = {f"{ns}.no_foreign_namespace_file" for ns in ALL}
    instances = {f"{ns}.fs_instances_own" for ns in FS_TYPES}
    assert {name.split(".")[0] for name in handles} == set(ALL)
    assert handles | instances | files - {"pid.no_foreign_namespace_file", "user.no_foreign_namespace_file"} <= shown
    assert shown <= set(checks) and files <= set(checks)


def handle(**facts: object) -> dict:
    return {"fd": 3, "link": "x", "dev": 1, "ino": 2, **facts}


def test_findings_judge_each_kind() -> None:
    """A usable nsfs handle, a refused one, a socket of another namespace, a host directory, a pipe."""
    net = handle(kind="nsfs", nstype="net", own=False, setns="ok", landed=[4, 1])
    user = handle(kind="nsfs", nstype="user", own=False, setns="EPERM")
    sock = handle(kind="socket", own=False)
    host_dir = handle(kind="dir", fs="0xef53", own_mount=False, mnt_id=27, outside_root=True, top=[1], root=[2])
    host_dir |= {"through": "ok", "fresh": "ok"}
    assert [(f.namespace, f.usable) for f in findings(net, set())] == [("net", True)]
    assert [(f.namespace, f.usable) for f in findings(user, set())] == [("user", False)]
    assert [(f.namespace, f.usable) for f in findings(sock, set())] == [("net", True)]
    assert [(f.namespace, f.usable) for f in findings(host_dir, {27})] == [("mnt", True)]
    assert findings(handle(kind="pipe"), set()) == []


@pytest.mark.parametrize("name", ["unshare", "bwrap"])
def test_runtime_that_keeps_the_hosts_sysfs_is_violated_in_net(name: str, run_suite) -> None:
    """util-linux unshare (--net --mount) and bwrap (--ro-bind / /) leave the host's sysfs mounted: a true
    finding, reported in net, not to be weakened."""
    require(name)
    combination = "cgroup+ipc+mnt+net+pid+user+uts" if name == "bwrap" else "mnt+net"
    run = run_suite("--nsc-runtime", name, check_node("net.fs_instances_own", combination))
    assert run.outcomes("net.fs_instances_own") == {combination: "failed"}, run.output
    assert run.verdicts()["net"] == "violated"


def test_unshare_with_a_host_namespace_file_on_the_host_is_violated_in_that_namespace(run_suite) -> None:
    """util-linux unshare copies the host's mount table: with the host's UTS namespace file bound there, uts is
    violated (setns through it renames the host) and nothing else; the host's PID namespace file bound beside it is
    refused (EINVAL: an ancestor) and only evidence."""
    require("unshare")
    with host_mount_table(fcntl.LOCK_EX), host_namespace_file("uts") as uts, host_namespace_file("pid") as pid:
        run = run_suite(
            "--nsc-runtime", "unshare", "--nsc-combinations", "singles", "--nsc-namespaces", "uts,pid,mnt", CHECKS
        )
    assert run.verdicts() == {"uts": "violated", "pid": "conformant", "mnt": "conformant"}, run.output
    assert set(run.outcomes("uts.no_foreign_namespace_file").values()) == {"failed"}
    refused = [r for r in run.report["results"] if r["check"] == "pid.no_foreign_namespace_file"]
    assert refused and all(r["outcome"] == "passed" and pid in str(r["evidence"]["refused"]) for r in refused)
    failed = [r["evidence"].get("usable") for r in run.report["results"] if r["outcome"] == "failed"]
    assert all(uts in str(usable) for usable in failed), failed


def test_runc_with_a_volume_of_a_host_namespace_file_is_violated_in_that_namespace(run_suite, tmp_path: Path) -> None:
    """runc (a root of its own) with the host's network namespace file as a volume, as `-v /run/netns:/run/netns`
    gives a container: net is violated, and nothing else. (Not with a user namespace: its root may not make the
    volume's mount point in the harness's root directory.)"""
    require("runc")
    text = (PROFILES_DIR / "runc.toml").read_text()
    sound = 'options = ["rbind"] }]'
    source = f"/proc/{os.getpid()}/ns/net"
    volume = f'{{ destination = "/run/host-netns", source = "{source}", type = "bind", options = ["bind"] }}'
    assert sound in text
    profile = tmp_path / "runc-netns-volume.toml"
    profile.write_text(text.replace(sound, f'options = ["rbind"] }}, {volume}]'))
    run = run_suite(
        f"--nsc-runtime={profile}",
        "--nsc-combinations",
        "singles",
        "--nsc-namespaces",
        "uts,net",
        "--nsc-areas",
        "none",
        CHECKS,
    )
    assert run.verdicts() == {"uts": "conformant", "net": "violated"}, run.output
    assert run.outcomes("net.no_foreign_namespace_file") == {"mnt+net": "failed", "mnt+net+uts": "failed"}
