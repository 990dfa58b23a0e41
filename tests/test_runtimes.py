"""The bundled runtimes for real: every check runs without error, a leak is reported where it is, nothing is left."""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from nsconform.hygiene import journal
from nsconform.runtimes.runtime import PROFILES_DIR, declared_hardening, resolve
from nsconform.sandbox.sandbox import Sandbox, pid_in_namespace
from tests.conftest import ROOT, SuiteRun

# unshare and firejail copy the host's mount table with the capabilities to join its namespace files: their verdicts
# hold only while no other test puts one there (a dockerd's, a bound namespace file)
pytestmark = pytest.mark.usefixtures("stable_host_mounts")

# Each bundled runtime with the combinations its test builds (a matrix or bundle: each namespace alone, none, all).
RUNS = {
    "unshare": ["--nsc-combinations", "singles"],
    "bwrap": [],
    "runc": ["--nsc-combinations", "singles"],
    "crun": ["--nsc-combinations", "singles"],
    "podman": [],
    "lxc": [],
    "nspawn": [],
    "firejail": [],
    "runsc": [],
}
# The verdicts each gets on a Debian 12 host, every namespace not named conformant; docs/runtimes.md has the
# measured table and each profile's comments the evidence behind it.
DEFAULT_NAMESPACES = ("uts", "pid", "mnt", "ipc", "net", "user")
VIOLATED = {
    # unshare --ipc --mount keeps the host's /dev/shm: POSIX shared memory leaks; unshare --net --mount keeps the
    # host's sysfs: /sys/class/net lists the host's links (docs/escapes.md)
    "unshare": {"ipc", "net"},
    # bwrap as root maps uid 0 inside to uid 0 on the host; --ro-bind / / keeps the host's sysfs
    "bwrap": {"user", "net"},
    "runsc": {"pid"},  # gVisor's init dies of a SIGKILL sent from inside (Linux protects a namespace's init)
}
# The mount checks that observe behaviour, and the one true reason for skipping one of them on these runtimes.
MOUNT_BEHAVIOUR = (
    "mnt.mount_hidden_from_host",
    "mnt.unmount_stays_inside",
    "mnt.mount_inside_does_not_propagate",
    "mnt.host_mount_does_not_propagate",
)
# The true reasons a behavioural mount check may skip on these runtimes: with a user namespace of its own, a
# mount from the host cannot go; crun with a user namespace binds the volume without the mounts under it.
MOUNT_SKIPS = ("locks inherited mounts", "brought the volume in without the mounts under it")
OWN_ROOT = ("runc", "crun", "podman", "lxc", "nspawn", "firejail")
CHECKS = str(ROOT / "isolation_checks")
CONTAINER_LISTS = {  # how each runtime lists what it keeps: one container name a line
    "runc": ["runc", "list", "--quiet"],
    "crun": ["crun", "list", "--quiet"],
    "podman": ["podman", "ps", "--all", "--format", "{{.Names}}"],
    "runsc": ["runsc", "list", "-quiet"],
}


def require(name: str) -> None:
    reason = resolve(name, ROOT).unavailable()
    if reason:
        pytest.skip(f"runtime {name}: {reason}")


def leftovers() -> list[str]:
    """What this process's runs left on the host: scratch dirs, mounts, containers (their names carry its token)."""
    tag = journal.token()
    found = [str(p) for p in Path(tempfile.gettempdir()).glob(f"nsconform-*-{tag}-*")]
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if tag in line]
    for name, argv in CONTAINER_LISTS.items():
        if resolve(name, ROOT).unavailable() is None:
            listed = subprocess.run(argv, capture_output=True, text=True, check=False).stdout.split()
            found += [f"{name} container {c}" for c in listed if tag in c]
    return found


def failures(run: SuiteRun, outcome: str) -> list[str]:
    return [f"{r['id']}: {r['reason'][:300]}" for r in run.report["results"] if r["outcome"] == outcome]


@pytest.mark.parametrize("name", RUNS)
def test_bundled_runtime_runs_every_check_without_error(name: str, run_suite) -> None:
    """No `error` outcome; the runtime builds what it claims (every namespace identity passes, or is that of a
    kernel of the sandbox's own); its committed verdicts; no check waits out a timeout; nothing is left."""
    require(name)
    run = run_suite("--nsc-runtime", name, *RUNS[name], CHECKS)
    assert run.report["runtime"]["name"] == name and run.report["results"], run.output
    assert not failures(run, "error")
    wrong = [
        r["id"]
        for r in run.report["results"]
        if r["check"].endswith(".namespace_identity")
        and r["outcome"] != "passed"
        and not (r["outcome"] == "skipped" and "kernel of its own" in r["reason"])
    ]
    assert not wrong
    violated = VIOLATED.get(name, set())
    expected = {ns: "violated" if ns in violated else "conformant" for ns in DEFAULT_NAMESPACES}
    expected |= dict.fromkeys(declared_hardening(resolve(name, ROOT)).areas, "conformant")  # its as-shipped sandbox
    assert run.verdicts() == expected, failures(run, "failed")
    slow = [f"{r['id']}: {r['duration_s']} s" for r in run.report["results"] if r["duration_s"] > 5]
    assert not slow  # the probe timeout is 10 s: a check that waited one out would show here
    declared = [
        r for r in run.report["results"] if r["check"] in ("uts.hostname_as_declared", "user.id_maps_as_declared")
    ]
    assert all(r["outcome"] in ("passed", "skipped") for r in declared), declared
    assert not leftovers()


@pytest.mark.parametrize("name", OWN_ROOT)
def test_mount_behaviour_is_checked_on_runtimes_with_a_root_of_their_own(name: str, run_suite) -> None:
    """The harness's volume brings its mount points in: every behavioural mount check runs and passes, or skips
    for the one true reason (a user namespace of its own locks the mounts it inherits)."""
    require(name)
    run = run_suite("--nsc-runtime", name, *RUNS[name], "--nsc-namespaces", "mnt,user", "-k", "mnt.py", CHECKS)
    ran = [r for r in run.report["results"] if r["check"] in MOUNT_BEHAVIOUR]
    assert {r["check"] for r in ran if r["outcome"] == "passed"} == set(MOUNT_BEHAVIOUR) - (
        {"mnt.unmount_stays_inside"} if name == "nspawn" else set()
    ), run.output
    others = [r for r in ran if r["outcome"] != "passed" and not any(why in r["reason"] for why in MOUNT_SKIPS)]
    assert not others, others


LEAKY_VOLUMES = {  # the harness's volume with shared propagation: a mount made inside reaches the host
    "runc": ('options = ["rbind"] }]', 'options = ["rbind", "rshared"] }]\nrootfs_propagation = "rshared"'),
    "podman": ('"{volume}:{volume}"', '"{volume}:{volume}:rshared"'),
}


@pytest.mark.parametrize("name", LEAKY_VOLUMES)
def test_volume_with_shared_propagation_is_violated(name: str, run_suite, tmp_path: Path) -> None:
    """The same runtime with the volume made rshared: mnt is violated by the mount made inside (podman's also by the
    host's reaching the sandbox, which it declares private: shared is both ways), and only mnt."""
    require(name)
    sound, leaky = LEAKY_VOLUMES[name]
    text = (PROFILES_DIR / f"{name}.toml").read_text()
    assert sound in text
    path = tmp_path / f"{name}-rshared.toml"
    path.write_text(text.replace(sound, leaky))
    args = (*RUNS[name], "--nsc-namespaces", "mnt", "--nsc-areas", "none", CHECKS)
    run = run_suite(f"--nsc-runtime={path}", *args)
    assert run.verdicts() == {"mnt": "violated"}
    failed = {r.split("::")[1].split("[")[0] for r in failures(run, "failed")}
    assert "test_mount_inside_does_not_propagate" in failed
    assert failed <= {"test_mount_inside_does_not_propagate", "test_host_mount_does_not_propagate"}
    assert not leftovers()


def test_declared_expectations_are_checked_on_real_runtimes(run_suite) -> None:
    """bwrap's declared hostname and unshare's declared id maps are each checked, and hold."""
    require("bwrap")
    require("unshare")
    bwrap = run_suite("--nsc-runtime", "bwrap", "--nsc-namespaces", "uts", "-k", "hostname_as_declared", CHECKS)
    assert bwrap.outcomes("uts.hostname_as_declared") == {"cgroup+ipc+mnt+net+pid+user+uts": "passed"}
    unshare = run_suite("--nsc-runtime", "unshare", "--nsc-namespaces", "user,pid", "-k", "id_maps_as_declared", CHECKS)
    assert unshare.outcomes("user.id_maps_as_declared") == {"user": "passed", "pid+user": "passed"}


def test_namespace_a_matrix_runtime_leaks_is_violated_and_no_other(run_suite, tmp_path: Path) -> None:
    """unshare whose uts flag does nothing: uts is violated, every other verdict is the sound profile's."""
    require("unshare")
    sound_text = (PROFILES_DIR / "unshare.toml").read_text()
    leaky = tmp_path / "unshare-no-uts.toml"
    leaky.write_text(sound_text.replace('uts = ["--uts"]', 'uts = ["--fork"]'))
    # not ipc: ipc.sysv_objects_shared compares host-wide SysV objects, which parallel tests create and remove
    args = ("--nsc-combinations", "singles", "--nsc-namespaces", "uts,pid,user")
    sound = run_suite("--nsc-runtime", "unshare", *args, CHECKS)
    broken = run_suite("--nsc-runtime", str(leaky), *args, CHECKS)
    assert sound.verdicts()["uts"] == "conformant", failures(sound, "failed")
    assert broken.verdicts() == {**sound.verdicts(), "uts": "violated"}
    assert {r.split("::")[1].split("[")[0] for r in failures(broken, "failed") if "/uts.py" in r} >= {
        "test_namespace_identity",
        "test_hostname_private",
    }


def test_namespace_a_fixed_runtime_claims_but_lacks_is_violated_alone(run_suite, tmp_path: Path) -> None:
    """A fixed unshare command that claims uts without --uts: uts is violated, no other namespace."""
    require("unshare")
    verdicts = {}
    for name, flags in (("sound", ["--uts", "--pid", "--net"]), ("leaky", ["--pid", "--net"])):
        path = tmp_path / f"{name}.toml"
        path.write_text(f'name = "{name}"\ncommand = {["unshare", "--fork", *flags, "--"]}\n'.replace("'", '"'))
        path.write_text(path.read_text() + 'isolates = ["uts", "pid", "net"]\n')
        verdicts[name] = run_suite("--nsc-runtime", str(path), "--nsc-namespaces", "uts,pid,net", CHECKS).verdicts()
    assert verdicts["sound"]["uts"] == verdicts["sound"]["pid"] == "conformant"
    assert verdicts["leaky"] == {**verdicts["sound"], "uts": "violated"}


@pytest.mark.parametrize("name", ["runc", "podman"])
def test_stuck_sandbox_is_killed_and_removed_on_close(name: str) -> None:
    """A probe that no longer reads (stopped) is killed on close, also where it is not in the runtime's process
    tree (podman hands it to conmon), and the runtime's container is removed."""
    require(name)
    runtime = resolve(name, ROOT)
    launch = runtime.launch(runtime.buildable(runtime.isolates or frozenset()))
    box = Sandbox(dataclasses.replace(launch, cleanup=[]), timeout=30)  # the profile's cleanup comes after
    try:
        probe = psutil.Process(box.pid)
        assert pid_in_namespace(box.pid) == (box.ns_inode("pid"), 1)  # found by its namespace and inner pid
        descendant = box.pid in {p.pid for p in psutil.Process(box.process.pid).children(recursive=True)}
        assert descendant == (name == "runc")
        probe.suspend()  # SIGSTOP: it reads neither the exit request nor the end of its input
    finally:
        box.close()
        gone = not probe.is_running() or probe.status() == psutil.STATUS_ZOMBIE
        for step in reversed(launch.cleanup):
            step()
    assert gone, "close() left the sandbox's probe running"
    assert not leftovers()
