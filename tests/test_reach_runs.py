"""The devices, knobs and sockets areas on real sandboxes: conformant on runc's bundle as runc ships it, violated,
each in exactly its area, on that bundle weakened the way containers are opened in practice; and the host's
knobs, device nodes and listening sockets the same after a run as before it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
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
from tests.conftest import ROOT
from tests.runtime_profiles import profile_runtime

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None, reason="runs runc's as-shipped bundle as root"
)
AREAS = ("devices", "knobs", "sockets")
# config.json as `runc spec` writes it, then changed by EDITS (a JSON object): what a user's weakening would do
SPEC = """
import json, subprocess, sys
bundle, edits = sys.argv[1], json.loads(sys.argv[2])
subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
path = bundle + "/config.json"
config = json.load(open(path))
linux = config["linux"]
config["mounts"] += edits.get("mounts", [])
linux["readonlyPaths"] = [p for p in linux["readonlyPaths"] if p not in edits.get("writable", [])]
for kind in ("bounding", "effective", "permitted"):
    config["process"]["capabilities"][kind] += edits.get("caps", [])
linux["resources"]["devices"] += edits.get("allow", [])
linux["devices"] = linux.get("devices", []) + edits.get("devices", [])
json.dump(config, open(path, "w"))
"""
RUNC_DEVICES = ["null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts/ptmx", "pts/*"]
RUNC_KNOBS = list(knobs.ALL)


def runc_profile(name: str, **edits: Any) -> str:
    """The profile of runc with its as-shipped bundle (`runc spec`) changed by `edits`, declaring runc's promise."""
    spec = ["/usr/bin/python3", "-c", SPEC, "{bundle}", json.dumps(edits)]
    return f"""
name = "{name}"
requires = ["runc"]
bundle = "oci"
command = ["runc", "run", "--bundle", "{{bundle}}", "{{id}}"]
cleanup = ["runc", "delete", "--force", "{{id}}"]
isolates = ["uts", "pid", "mnt", "ipc", "net"]
[hardening]
source = "runc spec, as the tests weaken it"
spec = {json.dumps(spec)}
devices = {json.dumps(RUNC_DEVICES)}
knobs = {json.dumps(RUNC_KNOBS)}
sockets = []
"""


def runc_shipped(name: str, **edits: Any) -> Any:
    return profile_runtime(runc_profile(name, **edits), name)


def verdicts(run: Any) -> dict[str, str]:
    return {area: run.report["summary"][area]["verdict"] for area in AREAS if area in run.report["summary"]}


def outcomes(run: Any) -> dict[str, str]:
    return {r["check"]: r["outcome"] for r in run.report["results"] if r.get("area") in AREAS}


def run_areas(run_suite: Any, runtime: Any, *args: str) -> Any:
    checks = [str(ROOT / "isolation_checks" / f"{area}.py") for area in AREAS]
    return run_suite("--nsc-areas", ",".join(AREAS), "--nsc-namespaces", "uts", *checks, *args, runtime=runtime)


def test_sound_bundle_conformant(run_suite: Any) -> None:
    """runc's own bundle keeps every device, knob and socket out of reach, with nothing errored."""
    run = run_areas(run_suite, runc_shipped("runc-shipped"))
    assert verdicts(run) == dict.fromkeys(AREAS, "conformant"), run.output
    seen = outcomes(run)
    assert "error" not in seen.values() and "failed" not in seen.values(), seen
    assert seen["devices.block_mknod_unusable"] == "passed"
    assert seen["knobs.core_pattern_out_of_reach"] == "passed"
    assert seen["sockets.no_host_listener_reachable"] == "passed"
    for absent in ("modprobe", "uevent_helper", "sysrq_trigger"):  # not on this kernel: skipped, never passed
        path = knobs.KNOBS[absent.replace("_", "-") if absent == "sysrq_trigger" else absent][0]
        assert seen[f"knobs.{absent}_out_of_reach"] == ("skipped" if not os.path.exists(path) else "passed")


@contextmanager
def host_listener() -> Iterator[str]:
    """A listening Unix socket of the test's own on the host, in a journaled scratch dir (never connected to)."""
    with scratch_dir("hostsock", mode=0o711) as parent:
        path = os.path.join(parent, "daemon.sock")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path)
            sock.listen(1)
            yield path


def host_block() -> dict[str, Any]:
    numbers = devices.host_block_device()
    assert numbers is not None
    major, minor = numbers
    node = next(n for n in device_probe.device_nodes()["nodes"] if n[1:4] == ["b", major, minor])
    return {"path": node[0], "type": "b", "major": major, "minor": minor}


def weakened(kind: str) -> tuple[Any, str]:
    """A weakened bundle and the one area it must be violated in."""
    if kind == "device":  # `docker run --device`: the host's disk as a node inside, allowed by the device cgroup
        block = host_block()
        allow = {"allow": True, "type": "b", "major": block["major"], "minor": block["minor"], "access": "r"}
        return runc_shipped("runc-host-disk", devices=[block], allow=[allow]), "devices"
    if kind == "mknod":  # a device cgroup that allows every block device, and CAP_MKNOD
        allow = {"allow": True, "type": "b", "access": "rwm"}
        return runc_shipped("runc-mknod", caps=["CAP_MKNOD"], allow=[allow]), "devices"
    if kind == "proc_sys":  # /proc/sys left writable to root that is the host's root
        return runc_shipped("runc-proc-sys", writable=["/proc/sys"]), "knobs"
    if kind == "release_agent":  # a cgroup v1 hierarchy's root bound in read-write, with CAP_SYS_ADMIN
        agent = knobs.host_release_agents()[0]
        hierarchy = os.path.dirname(agent)
        mount = {"destination": "/mnt/cgroup", "type": "bind", "source": hierarchy, "options": ["rbind", "rw"]}
        return runc_shipped("runc-release-agent", caps=["CAP_SYS_ADMIN"], mounts=[mount]), "knobs"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["device", "mknod", "proc_sys", "release_agent"])
def test_weakened_bundle_violated_in_its_area(kind: str, run_suite: Any) -> None:
    runtime, area = weakened(kind)
    run = run_areas(run_suite, runtime)
    assert verdicts(run) == {a: "violated" if a == area else "conformant" for a in AREAS}, run.output


def test_host_socket_bound_in_violates_sockets(run_suite: Any) -> None:
    """A host daemon's socket bound into the sandbox (a `-v /run/docker.sock:...`) is a violation in sockets."""
    with host_listener() as path:
        mount = {"destination": "/run/daemon.sock", "type": "bind", "source": path, "options": ["bind"]}
        run = run_areas(run_suite, runc_shipped("runc-host-socket", mounts=[mount]))
    assert verdicts(run) == {"devices": "conformant", "knobs": "conformant", "sockets": "violated"}, run.output
    (result,) = [r for r in run.report["results"] if r["check"] == "sockets.no_host_listener_reachable"]
    assert "/run/daemon.sock" in json.dumps(result["evidence"])


def outside_harness(listeners: set[str]) -> set[str]:
    """Listeners but those in a harness scratch dir (other tests' daemons, the checks' own canaries)."""
    return {path for path in listeners if "/nsconform-" not in path}


def test_host_unchanged_by_the_areas(run_suite: Any) -> None:
    """The knobs' values, the host's device nodes and its listening sockets are the same after runs of the
    areas, on the weakened bundles (where a check that wrote or opened for writing would do harm) and the sound."""
    before = audit.reach()
    for kind in ("proc_sys", "release_agent", "mknod", "device"):
        run_areas(run_suite, weakened(kind)[0])
    run_areas(run_suite, runc_shipped("runc-shipped"))
    after = audit.reach()
    assert after["knobs"] == before["knobs"]
    assert after["devices"] == before["devices"]
    assert outside_harness(after["unix_listeners"]) == outside_harness(before["unix_listeners"])


@pytest.fixture
def runc_target() -> Iterator[Callable[..., int]]:
    """runc_target(**edits): a live runc container of its as-shipped bundle changed by `edits` (see runc_shipped),
    running sleep as its first process; its pid. Removed after (journaled, with the bundle's scratch dir)."""
    made: list[tuple[journal.Entry, str]] = []
    with ExitStack() as stack:

        def start(**edits: Any) -> int:
            bundle = Path(stack.enter_context(scratch_dir("target", mode=0o711)))
            spec = ["/usr/bin/python3", "-c", SPEC, str(bundle), json.dumps(edits)]
            write_shipped_bundle(bundle, spec, ["/usr/bin/sleep", "infinity"], unfiltered=False)
            name = naming.unique("ct")
            entry = journal.current().record("container", name, cleanup=["runc", "delete", "--force", name])
            made.append((entry, name))
            quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            subprocess.run(["runc", "create", "--bundle", str(bundle), name], check=True, timeout=30, **quiet)
            pid = json.loads(subprocess.run(["runc", "state", name], capture_output=True, check=True).stdout)["pid"]
            subprocess.run(["runc", "start", name], check=True, timeout=30)
            return pid

        try:
            yield start
        finally:
            for entry, name in made:
                subprocess.run(["runc", "delete", "--force", name], capture_output=True, timeout=30)
                journal.current().removed(entry)


def test_attached_areas_judge_the_target(runc_target: Callable[..., int], run_suite: Any, tmp_path: Path) -> None:
    """Under --nsc-attach the facts checks judge the target, a runc container with a host daemon's socket bound in
    (sockets violated, devices and knobs conformant), and the behavioural ones are skipped, saying so."""
    profile = tmp_path / "runc-attach.toml"
    profile.write_text(runc_profile("runc-attach"))
    with host_listener() as path:
        mount = {"destination": "/run/daemon.sock", "type": "bind", "source": path, "options": ["bind"]}
        pid = runc_target(mounts=[mount])
        run = run_areas(run_suite, None, "--nsc-runtime", str(profile), "--nsc-attach", str(pid))
    assert verdicts(run) == {"devices": "conformant", "knobs": "conformant", "sockets": "violated"}, run.output
    seen = {r["check"]: r for r in run.report["results"] if r.get("area") in AREAS}
    for behaviour in ("devices.no_host_device_opens", "devices.block_mknod_unusable"):
        assert seen[behaviour]["outcome"] == "skipped" and "--nsc-attach" in seen[behaviour]["reason"]
    assert seen["devices.no_host_device_allowed"]["outcome"] == "passed"
    assert seen["knobs.core_pattern_out_of_reach"]["outcome"] == "passed"
    assert "/run/daemon.sock" in json.dumps(seen["sockets.no_host_listener_reachable"]["evidence"])
