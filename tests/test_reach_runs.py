"""The devices, knobs and sockets areas on real sandboxes: conformant on the runtimes' bundles as they ship them,
violated on those bundles weakened the way containers are opened in practice (tests/shipped_spec.py), in
exactly the areas each weakening touches; judged from the target's facts under --nsc-attach; and the host's
knobs, device nodes and listening sockets the same after a run as before it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from nsconform.host.observe import scratch_dir
from nsconform.hygiene import audit, journal, naming
from nsconform.inside.areas import devices as device_probe
from nsconform.reach import devices, knobs
from nsconform.runtimes.bundles import write_shipped_bundle
from nsconform.runtimes.runtime import resolve
from tests.conftest import ROOT, SuiteRun
from tests.test_areas import SCRIPT, errors, require, weakened

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the runtimes' as-shipped sandboxes as root")
AREAS = ("devices", "knobs", "sockets")
ALL_AREAS = ("caps", "seccomp", "paths", *AREAS)
CHECKS = [str(ROOT / "isolation_checks" / f"{area}.py") for area in ALL_AREAS]


def run_areas(run_suite: Any, runtime: Any, *args: str) -> SuiteRun:
    return run_suite("--nsc-areas", ",".join(ALL_AREAS), *CHECKS, *args, runtime=runtime)


def verdicts(run: SuiteRun, areas: tuple[str, ...] = AREAS) -> dict[str, str]:
    return {area: run.report["summary"][area]["verdict"] for area in areas if area in run.report["summary"]}


def outcomes(run: SuiteRun) -> dict[str, str]:
    return {r["check"]: r["outcome"] for r in run.report["results"] if r.get("area") in AREAS}


@pytest.mark.parametrize("name", ["runc", "crun", "podman"])
def test_sound_runtime_keeps_devices_knobs_and_sockets(name: str, run_suite: Any) -> None:
    """The bundled profile's as-shipped sandbox keeps every device, knob and socket its [hardening] declares out of
    reach: conformant, no error; a knob this kernel lacks is skipped, never passed."""
    runtime = resolve(name, ROOT)
    require(runtime)
    run = run_areas(run_suite, runtime)
    assert not errors(run), run.output
    assert verdicts(run) == dict.fromkeys(AREAS, "conformant"), run.output
    seen = outcomes(run)
    for check in ("devices.no_host_device_opens", "devices.block_mknod_unusable", "devices.no_host_device_allowed"):
        assert seen[check] == "passed", run.output
    for knob in knobs.ALL:
        check = f"knobs.{knob.replace('-', '_')}_out_of_reach"
        assert seen[check] == ("passed" if knobs.host_paths(knob) else "skipped"), run.output
    assert seen["sockets.no_host_listener_reachable"] == "passed"


@contextmanager
def host_listener() -> Iterator[str]:
    """A listening Unix socket of the test's own on the host, in a journaled scratch dir (never connected to)."""
    with scratch_dir("hostsock", mode=0o711) as parent:
        path = os.path.join(parent, "daemon.sock")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path)
            sock.listen(1)
            yield path


def host_disk() -> tuple[str, ...]:
    """A host block device the host's root opens: its /dev path and numbers."""
    numbers = devices.host_block_device()
    assert numbers is not None
    node = next(n for n in device_probe.device_nodes()["nodes"] if n[1:4] == ["b", *numbers])
    return node[0], str(numbers[0]), str(numbers[1])


# change, its arguments (a function of the host), the areas it must be violated in, the checks that fail there
WEAKENINGS = [
    ("host_disk", host_disk, {"devices"}, {"devices.no_host_device_opens", "devices.no_host_device_allowed"}),
    ("mknod", tuple, {"caps", "devices"}, {"devices.block_mknod_unusable"}),  # CAP_MKNOD is undeclared too
    ("proc_sys_elsewhere", tuple, {"knobs"}, {"knobs.core_pattern_out_of_reach"}),
    (
        "release_agent",
        lambda: (os.path.dirname(knobs.host_paths("release_agent")[0]),),
        {"caps", "knobs"},  # CAP_SYS_ADMIN, which writing a release_agent needs, is undeclared too
        {"knobs.release_agent_out_of_reach"},
    ),
]


# test_negative_controls.py counts these as controlled: each fails on a sandbox below
CONTROLLED = {check for *_, checks in WEAKENINGS for check in checks} | {"sockets.no_host_listener_reachable"}


@pytest.mark.parametrize(("change", "args", "areas", "checks"), WEAKENINGS, ids=[w[0] for w in WEAKENINGS])
def test_weakening_is_violated_in_its_areas(
    change: str, args: Callable[[], tuple[str, ...]], areas: set[str], checks: set[str], run_suite: Any
) -> None:
    """A host disk given to the sandbox, mknod of any block device allowed, the host's /proc/sys bound in
    read-write, a v1 hierarchy's root bound in with CAP_SYS_ADMIN: each violated in its areas alone."""
    if change == "release_agent" and not knobs.host_paths("release_agent"):
        pytest.skip("the host mounts no cgroup v1 hierarchy")
    runtime = weakened(change, args=args())
    require(runtime)
    run = run_areas(run_suite, runtime)
    assert not errors(run), run.output
    expected = {a: "violated" if a in areas else "conformant" for a in ALL_AREAS if a != "seccomp"}
    assert verdicts(run, tuple(expected)) == expected, run.output
    failed = {c for c, outcome in outcomes(run).items() if outcome == "failed"}
    assert failed == checks, run.output


def test_host_socket_bound_in_violates_sockets(run_suite: Any) -> None:
    """A host daemon's socket bound into the sandbox (`-v /run/docker.sock:...`) is violated in sockets alone,
    matched to the listener the test made, which nothing connected to."""
    with host_listener() as path:
        runtime = weakened("host_socket", args=(path,))
        require(runtime)
        run = run_areas(run_suite, runtime)
    assert verdicts(run) == {"devices": "conformant", "knobs": "conformant", "sockets": "violated"}, run.output
    (result,) = [r for r in run.report["results"] if r["check"] == "sockets.no_host_listener_reachable"]
    assert "/run/daemon.sock" in json.dumps(result["evidence"]) and path in json.dumps(result["evidence"])


def test_privileged_sandbox_is_violated_in_devices_and_knobs(run_suite: Any) -> None:
    """What `docker run --privileged` does to a bundle (every capability, nothing masked or read-only, every device
    allowed and the host's disks in /dev): devices and knobs violated, sockets not (it binds none in)."""
    runtime = weakened("privileged")
    require(runtime)
    run = run_areas(run_suite, runtime)
    assert not errors(run), run.output
    assert verdicts(run) == {"devices": "violated", "knobs": "violated", "sockets": "conformant"}, run.output
    failed = {c for c, outcome in outcomes(run).items() if outcome == "failed"}
    assert {"devices.no_host_device_opens", "devices.block_mknod_unusable", "devices.no_host_device_allowed"} <= failed
    assert "knobs.core_pattern_out_of_reach" in failed


@pytest.fixture
def runc_target() -> Iterator[Callable[..., int]]:
    """runc_target(change, *args): a live runc container of its as-shipped bundle with one change
    (tests/shipped_spec.py), sleep its first process; its host pid. Removed after (journaled, with its bundle)."""
    made: list[tuple[journal.Entry, str]] = []
    with ExitStack() as stack:

        def start(change: str, *args: str) -> int:
            bundle = Path(stack.enter_context(scratch_dir("target", mode=0o711)))
            spec = ["/usr/bin/python3", str(SCRIPT), "runc", str(bundle), change, *args]
            write_shipped_bundle(bundle, spec, ["/usr/bin/sleep", "infinity"], unfiltered=False)
            name = naming.unique("ct")
            entry = journal.current().record("container", name, cleanup=["runc", "delete", "--force", name])
            made.append((entry, name))
            quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            subprocess.run(["runc", "create", "--bundle", str(bundle), name], check=True, timeout=30, **quiet)
            state = subprocess.run(["runc", "state", name], capture_output=True, check=True, timeout=30)
            subprocess.run(["runc", "start", name], check=True, timeout=30)
            return int(json.loads(state.stdout)["pid"])

        try:
            yield start
        finally:
            for entry, name in made:
                subprocess.run(["runc", "delete", "--force", name], capture_output=True, timeout=30)
                journal.current().removed(entry)


def test_attached_areas_judge_the_target(runc_target: Callable[..., int], run_suite: Any) -> None:
    """Under --nsc-attach the facts checks judge the target, a runc container with a host daemon's socket bound in
    (sockets violated, devices and knobs conformant), and the behavioural ones are skipped, saying so."""
    require(resolve("runc", ROOT))
    with host_listener() as path:
        pid = runc_target("host_socket", path)
        run = run_areas(run_suite, None, "--nsc-runtime", "runc", "--nsc-attach", str(pid))
    assert verdicts(run) == {"devices": "conformant", "knobs": "conformant", "sockets": "violated"}, run.output
    seen = {r["check"]: r for r in run.report["results"] if r.get("area") in AREAS}
    for behaviour in ("devices.no_host_device_opens", "devices.block_mknod_unusable"):
        assert seen[behaviour]["outcome"] == "skipped" and "--nsc-attach" in seen[behaviour]["reason"]
    assert seen["devices.no_host_device_allowed"]["outcome"] == "passed"
    assert seen["knobs.core_pattern_out_of_reach"]["outcome"] == "passed"
    assert "/run/daemon.sock" in json.dumps(seen["sockets.no_host_listener_reachable"]["evidence"])


def outside_harness(listeners: set[str]) -> set[str]:
    """The host daemons' listeners: those outside the temp dir, where the checks' canaries, other tests' daemons and
    browsers of this shared machine come and go."""
    return {path for path in listeners if not path.startswith(tempfile.gettempdir() + "/")}


def test_host_unchanged_by_the_areas(run_suite: Any, stable_host_mounts: None) -> None:
    """The knobs' values, the host's device nodes and its listening sockets are the same after full runs of every
    area, on the privileged and weakened bundles (where a check that wrote or opened for writing would do harm)
    and on the sound one. The tests' own dockerd (its containerd shims listen under /run/containerd) does not run
    meanwhile (stable_host_mounts)."""
    before = audit.reach()
    for runtime in (weakened("privileged"), weakened("proc_sys_elsewhere"), weakened("mknod"), resolve("runc", ROOT)):
        require(runtime)
        run_areas(run_suite, runtime)
    after = audit.reach()
    assert after["knobs"] == before["knobs"]
    # every node as it was; on this shared machine others may add one (a loop device), never one of the mknod's
    assert before["devices"] <= after["devices"], sorted(before["devices"] - after["devices"])
    assert not [node for node in after["devices"] - before["devices"] if "nsconform-mknod-" in node]
    assert outside_harness(after["unix_listeners"]) == outside_harness(before["unix_listeners"])
