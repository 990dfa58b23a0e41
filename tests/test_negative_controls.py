"""Every check has teeth: on a deliberately leaky sandbox, it must fail.

Each control names a check, a leaky native runtime and the combination to run it on. The
leaky runtimes claim a namespace they do not unshare (`omit`), unshare one they do not claim
(`extra`), carry one of the launcher's deliberate flaws (`leaks`), or map root inside to other
host ids than the runtime promises (`uid_map`).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress

import psutil
import pytest

import nsconform.isolation_checks as isolation_checks
from nsconform.guarantees import NOTHING, spec_of
from nsconform.host.observe import Host
from nsconform.hygiene import journal, naming
from nsconform.reach import knobs
from nsconform.sandbox.native import NativeRuntime
from tests.conftest import check_node
from tests.runtime_profiles import hostname_runtime
from tests.test_areas import CONTROLLED as CAPS_SECCOMP_PATHS
from tests.test_reach_runs import CONTROLLED as DEVICES_KNOBS_SOCKETS


def omit(ns: str) -> NativeRuntime:
    return NativeRuntime(omit=frozenset({ns}))


def extra(ns: str) -> NativeRuntime:
    return NativeRuntime(extra=frozenset({ns}))


def leak(flaw: str) -> NativeRuntime:
    return NativeRuntime(leaks=frozenset({flaw}))


def mapped(*lines: tuple[int, int, int]) -> NativeRuntime:
    """Root inside mapped by `lines` (uid and gid alike) instead of to the promised unprivileged range."""
    return NativeRuntime(uid_map=lines)


ROOT_IS_HOST_ROOT = mapped((0, 0, 4294967295))  # like `unshare --map-root-user` run as root
# the namespaces whose host file setns accepts from a sandbox, and the combination of each with mnt
BY_PATH = (("uts", "mnt+uts"), ("ipc", "ipc+mnt"), ("net", "mnt+net"), ("mnt", "mnt"), ("cgroup", "cgroup+mnt"))
BY_PATH += (("time", "mnt+time"),)


def omit_with_file(ns: str) -> NativeRuntime:
    """Claims `ns` without unsharing it, the host's `ns` namespace file bound inside (then its own)."""
    return NativeRuntime(omit=frozenset({ns}), leaks=frozenset({f"ns_file_{ns}"}))


def host_sysv_object():
    """Something on the host for a wrongly isolated IPC namespace to miss."""
    return Host().ipc_object("shm", naming.ipc_key())


@contextmanager
def lingerers_killed() -> Iterator[None]:
    """After the run, kill what the `linger` leak left: processes whose probe tag carries this process's token."""
    try:
        yield
    finally:
        token = journal.token()
        for proc in psutil.process_iter(["cmdline"]):
            if any(token in arg for arg in proc.info["cmdline"] or []) and proc.pid != os.getpid():
                with suppress(psutil.Error):
                    proc.kill()


# check, leaky runtime, --nsc-namespaces, combination, host-side setup for the run
CONTROLS = [
    ("uts.namespace_identity", omit("uts"), "uts", "uts", None),
    ("uts.namespace_identity", extra("uts"), "uts", "none", None),
    ("uts.hostname_private", omit("uts"), "uts", "uts", None),
    ("uts.domainname_private", omit("uts"), "uts", "uts", None),
    (
        "uts.names_shared",
        NativeRuntime(extra=frozenset({"uts"}), leaks=frozenset({"rename_host"})),
        "uts",
        "none",
        None,
    ),
    ("pid.namespace_identity", omit("pid"), "pid", "pid", None),
    ("pid.namespace_identity", extra("pid"), "pid", "none", None),
    ("pid.init_is_pid_1", omit("pid"), "pid", "pid", None),
    ("pid.init_is_pid_1", leak("no_init_fork"), "pid", "pid", None),
    ("pid.proc_shows_only_sandbox", leak("host_proc"), "pid,mnt", "mnt+pid", None),
    ("pid.host_pid_unreachable", omit("pid"), "pid", "pid", None),
    ("pid.orphan_reparented_to_init", omit("pid"), "pid", "pid", None),
    ("pid.init_survives_sigkill_from_inside", omit("pid"), "pid", "pid", None),
    ("pid.no_survivor_after_init_exit", omit("pid"), "pid", "pid", None),
    ("pid.no_survivor_after_init_exit", leak("no_init_fork"), "pid", "pid", None),  # the probe outside it
    ("pid.host_pids_visible", extra("pid"), "pid", "none", None),
    ("ipc.namespace_identity", omit("ipc"), "ipc", "ipc", None),
    ("ipc.namespace_identity", extra("ipc"), "ipc", "none", None),
    ("ipc.sysv_objects_hidden_from_host", omit("ipc"), "ipc", "ipc", None),
    ("ipc.host_sysv_objects_hidden_inside", omit("ipc"), "ipc", "ipc", None),
    ("ipc.posix_mqueue_private", omit("ipc"), "ipc", "ipc", None),
    ("ipc.posix_shm_private", leak("host_dev_shm"), "ipc,mnt", "ipc+mnt", None),
    ("ipc.sysv_objects_shared", extra("ipc"), "ipc", "none", host_sysv_object),
    ("mnt.namespace_identity", omit("mnt"), "mnt", "mnt", None),
    ("mnt.namespace_identity", extra("mnt"), "mnt", "none", None),
    ("mnt.mount_hidden_from_host", omit("mnt"), "mnt", "mnt", None),
    ("mnt.unmount_stays_inside", omit("mnt"), "mnt", "mnt", None),
    ("mnt.fresh_proc", leak("host_proc"), "mnt,pid", "mnt+pid", None),
    ("mnt.mount_inside_does_not_propagate", leak("keep_propagation"), "mnt", "mnt", None),
    ("mnt.host_mount_does_not_propagate", leak("keep_propagation"), "mnt", "mnt", None),
    ("mnt.host_mount_does_not_propagate", leak("keep_propagation"), "mnt,user", "mnt+user", None),  # slave
    ("mnt.mount_table_shared", extra("mnt"), "mnt", "none", None),
    ("user.namespace_identity", omit("user"), "user", "user", None),
    ("user.namespace_identity", extra("user"), "user", "none", None),
    ("user.id_maps_as_declared", ROOT_IS_HOST_ROOT, "user", "user", None),
    ("user.root_is_not_host_root", ROOT_IS_HOST_ROOT, "user", "user", None),
    ("user.file_owner_mapped", ROOT_IS_HOST_ROOT, "user", "user", None),
    ("user.host_root_file_unreadable", ROOT_IS_HOST_ROOT, "user", "user", None),
    ("user.host_root_process_unsignalable", ROOT_IS_HOST_ROOT, "user", "user", None),
    ("user.shared_hostname_unchangeable", omit("user"), "user", "user", None),
    ("user.setgroups_denied_where_required", mapped((0, 0, 1)), "user", "user", None),
    ("user.no_capability_over_host", omit("user"), "user", "user", None),
    ("user.id_maps_shared", extra("user"), "user", "none", None),
    ("net.namespace_identity", omit("net"), "net", "net", None),
    ("net.namespace_identity", extra("net"), "net", "none", None),
    ("net.only_loopback", omit("net"), "net", "net", None),
    ("net.host_links_invisible", omit("net"), "net", "net", None),
    ("net.host_links_visible", extra("net"), "net", "none", None),
    ("net.loopback_port_private", omit("net"), "net", "net", None),
    ("net.host_loopback_unreachable", omit("net"), "net", "net", None),
    ("net.host_abstract_socket_unreachable", omit("net"), "net", "net", None),
    ("net.sysctl_private", omit("net"), "net", "net", None),
    ("net.veth_carries_tcp", omit("net"), "net", "net", None),
    ("net.veth_vanishes_with_sandbox", leak("linger"), "net", "net", lingerers_killed),
    ("cgroup.namespace_identity", omit("cgroup"), "cgroup", "cgroup", None),
    ("cgroup.namespace_identity", extra("cgroup"), "cgroup", "none", None),
    ("cgroup.namespace_root", omit("cgroup"), "cgroup", "cgroup", None),
    ("cgroup.paths_shared", extra("cgroup"), "cgroup", "none", None),
    ("time.namespace_identity", omit("time"), "time", "time", None),
    ("time.namespace_identity", extra("time"), "time", "none", None),
    ("time.clock_offsets_private", omit("time"), "time", "time", None),
    ("time.clocks_shared", extra("time"), "time", "none", None),
    # escape routes (docs/escapes.md): a handle or view of the host's kept inside
    ("net.no_inherited_handle", leak("nsfs_net"), "net", "net", None),
    ("net.no_inherited_handle", leak("host_socket"), "net", "net", None),
    ("net.fs_instances_own", leak("host_sysfs"), "net,mnt", "mnt+net", None),
    ("net.fs_instances_own", leak("host_sysfs_at"), "net,mnt", "mnt+net", None),
    ("ipc.no_inherited_handle", leak("nsfs_ipc"), "ipc", "ipc", None),
    ("ipc.fs_instances_own", leak("host_mqueue"), "ipc,mnt", "ipc+mnt", None),
    ("mnt.no_inherited_handle", leak("nsfs_mnt"), "mnt", "mnt", None),
    ("mnt.no_inherited_handle", leak("host_root_fd"), "mnt", "mnt", None),
    ("mnt.cwd_and_root_inside", leak("host_cwd"), "mnt", "mnt", None),
    ("mnt.cwd_and_root_inside", leak("host_root_dir"), "mnt", "mnt", None),
    ("pid.no_inherited_handle", leak("host_proc_fd"), "pid,mnt", "mnt+pid", None),
    ("pid.no_inherited_handle", leak("host_pidfd"), "pid", "pid", None),
    ("uts.no_inherited_handle", leak("nsfs_uts"), "uts", "uts", None),
    ("user.no_inherited_handle", leak("host_dir"), "user", "user", None),
    ("cgroup.no_inherited_handle", leak("nsfs_cgroup"), "cgroup", "cgroup", None),
    ("cgroup.no_inherited_handle", leak("host_cgroup_fd"), "cgroup,mnt", "cgroup+mnt", None),
    ("cgroup.fs_instances_own", leak("host_cgroupfs"), "cgroup,mnt", "cgroup+mnt", None),
    ("cgroup.fs_instances_own", leak("host_cgroupfs_at"), "cgroup,mnt", "cgroup+mnt", None),
    ("pid.fs_instances_own", leak("host_proc_at"), "pid,mnt", "mnt+pid", None),
    ("time.no_inherited_handle", leak("nsfs_time"), "time", "time", None),
    # escape routes by path: a namespace file of the host's bound inside (the kernel refuses setns into an ancestor
    # PID or user namespace: there, a sandbox that only claims the namespace is what fails)
    *((f"{ns}.no_foreign_namespace_file", leak(f"ns_file_{ns}"), f"{ns},mnt", combo, None) for ns, combo in BY_PATH),
    ("pid.no_foreign_namespace_file", omit_with_file("pid"), "pid,mnt", "mnt+pid", None),
    ("user.no_foreign_namespace_file", omit_with_file("user"), "user,mnt", "mnt+user", None),
    ("uts.hostname_as_declared", hostname_runtime(sets_it=False), "uts", "uts", None),
    ("user.id_maps_as_declared", NativeRuntime(uid_map=((0, 200000, 65536),)), "user", "user", None),
]
# The areas' checks fail on weakened as-shipped sandboxes, in tests/test_areas.py and tests/test_reach_runs.py.
areas_controlled = CAPS_SECCOMP_PATHS | DEVICES_KNOBS_SOCKETS
# Checks of what a runtime declares ([expect]) pass on a sound runtime that declares it; native declares no hostname.
SOUND = {"uts.hostname_as_declared": hostname_runtime(sets_it=True)}


def control_id(control: tuple) -> str:
    check, runtime, _, combination, _ = control
    knobs = ("omit", "extra", "leaks", "uid_map")
    how = ",".join(f"{k}={'+'.join(sorted(map(str, v)))}" for k in knobs if (v := getattr(runtime, k, None)))
    return f"{check}[{combination}]-{how or runtime.name}"


@pytest.mark.parametrize("control", CONTROLS, ids=[control_id(c) for c in CONTROLS])
def test_check_fails_on_leaky_sandbox(control: tuple, run_suite) -> None:
    """The check reports `failed` (a violation, not an error) on its leaky sandbox."""
    check, runtime, namespaces, combination, setup = control
    with setup() if setup else nullcontext():
        run = run_suite("--nsc-namespaces", namespaces, check_node(check, combination), runtime=runtime)
    assert run.outcomes(check) == {combination: "failed"}, run.output
    assert run.report["summary"][spec_namespace(check)]["verdict"] == "violated"


@pytest.mark.parametrize("control", CONTROLS, ids=[control_id(c) for c in CONTROLS])
def test_check_passes_on_sound_sandbox(control: tuple, run_suite) -> None:
    """The same check passes on the sound sandbox of the same combination, or finds nothing there to examine (the
    leak was all there was): the failure is the leak's."""
    check, _, namespaces, combination, setup = control
    with setup() if setup else nullcontext():
        run = run_suite("--nsc-namespaces", namespaces, check_node(check, combination), runtime=SOUND.get(check))
    assert run.outcomes(check) == {combination: "passed"} or nothing_examined(run, check), run.output


def nothing_examined(run, check: str) -> bool:
    return [(r["outcome"], r["reason"].split(":")[0]) for r in run.report["results"]] == [("skipped", NOTHING)]


def catalogue() -> dict[str, object]:
    checks = {}
    for module in pkgutil.iter_modules(isolation_checks.__path__):
        mod = importlib.import_module(f"nsconform.isolation_checks.{module.name}")
        for value in vars(mod).values():
            spec = spec_of(value) if callable(value) else None
            if spec is not None:
                checks[spec.name] = spec
    return checks


def spec_namespace(check: str) -> str:
    return catalogue()[check].namespace


def test_every_check_has_a_negative_control() -> None:
    """A check nobody has seen fail is not trusted: the catalogue has no check without a control."""
    controlled = {c[0] for c in CONTROLS} | areas_controlled
    # a knob this kernel does not have skips on every sandbox here: none can fail it (its rule is core_pattern's)
    absent = {f"knobs.{name.replace('-', '_')}_out_of_reach" for name in knobs.ALL if not knobs.host_paths(name)}
    missing = sorted(set(catalogue()) - controlled - absent)
    assert not missing, f"checks without a leaky sandbox to fail on: {missing}"


def test_every_shared_and_isolated_direction_is_controlled() -> None:
    """Checks that apply either way ('any') are shown to fail in both directions."""
    for name, spec in catalogue().items():
        if spec.when == "any":
            combos = {c[3] for c in CONTROLS if c[0] == name}
            assert "none" in combos and len(combos) >= 2, f"{name} lacks a control in one direction"
