"""Docker, on an engine the test starts itself: the bundled profile, and --nsc-attach to a `docker run -d` container."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nsconform.host.observe import make_scratch_dir
from nsconform.hygiene import journal
from nsconform.inside import probe
from nsconform.runtimes.bundles import make_rootfs
from nsconform.runtimes.runtime import PROFILES_DIR, ProfileRuntime
from nsconform.sandbox.native import NativeRuntime
from tests.conftest import ROOT, host_mount_table, host_namespace_file
from tests.runtime_profiles import profile_runtime
from tests.test_areas import AREA_CHECKS
from tests.test_attach import comparable, target_state
from tests.test_runtimes import MOUNT_BEHAVIOUR

# dockerd changes host-wide state while it runs (its mounts, cgroups): tests that audit the host wait for it.
CHECKS = str(ROOT / "isolation_checks")
IMAGE = "nsconform-rootfs"
READY_TIMEOUT = 60.0
PRIVILEGED_RUNTIME = "nsconform-privileged"
# `docker run --privileged` asks runc for every capability, and root here lacks CAP_SYS_RESOURCE in its bounding
# set (runc refuses such a bundle): this runtime is runc after dropping that one from the bundle's config.json.
PRIVILEGED_WRAPPER = """#!/usr/bin/python3 -I
import json, os, sys
args = sys.argv[1:]
if "--bundle" in args:
    path = os.path.join(args[args.index("--bundle") + 1], "config.json")
    with open(path) as f:
        config = json.load(f)
    held = config["process"].get("capabilities", {})
    for kind in held:
        held[kind] = [cap for cap in held[kind] if cap != "CAP_SYS_RESOURCE"]
    with open(path, "w") as f:
        json.dump(config, f)
os.execvp("runc", ["runc", *args])
"""


def stop(daemon: subprocess.Popen, scratch: Path) -> None:
    """End dockerd by its pid (it stops its containers and containerd), then whatever is left of it under
    `scratch` (processes, mounts, files) and the empty parent cgroups it made for its containers."""
    daemon.terminate()
    try:
        daemon.wait(timeout=READY_TIMEOUT)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(scratch) in arg for arg in proc.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(str(scratch) + "/")]
    for point in sorted(points, key=len, reverse=True):
        with contextlib.suppress(OSError):
            probe.unmount(point, detach=True)
    shutil.rmtree(scratch, ignore_errors=True)
    cgroups = Path("/sys/fs/cgroup")
    for parent in [cgroups / "docker", *cgroups.glob("*/docker")]:  # the containers' parent cgroups, once empty
        with contextlib.suppress(OSError):  # busy: another engine's containers are in it
            parent.rmdir()


@pytest.fixture(scope="module")
def docker_host() -> Iterator[str]:
    """A dockerd of this test's own (no bridge, no iptables, no forwarding, its own data root, exec root, pid
    file and socket), ready once it says so over NOTIFY_SOCKET; the address for DOCKER_HOST. Skips where it
    cannot start."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("dockerd or docker not found on PATH (install.sh installs docker.io)")
    with host_mount_table(fcntl.LOCK_EX):  # its containers' netns files are in the host's mount table
        yield from started_dockerd()


def started_dockerd() -> Iterator[str]:
    made, entry = make_scratch_dir("docker")
    scratch = Path(made)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(scratch / "notify"))
    address = f"unix://{scratch}/docker.sock"
    wrapper = scratch / "privileged-runc"
    wrapper.write_text(PRIVILEGED_WRAPPER)
    wrapper.chmod(0o755)
    log = open(scratch / "dockerd.log", "w+b")  # noqa: SIM115 (closed below)
    daemon = subprocess.Popen(
        [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",  # dockerd turns the host's net.ipv4.ip_forward on at start otherwise
            f"--data-root={scratch}/data",
            f"--exec-root={scratch}/exec",
            f"--pidfile={scratch}/dockerd.pid",
            f"--host={address}",
            f"--add-runtime={PRIVILEGED_RUNTIME}={wrapper}",
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, "NOTIFY_SOCKET": str(scratch / "notify")},
        start_new_session=True,
    )
    try:
        ended = os.pidfd_open(daemon.pid)
        ready = False
        while not ready:
            readable = select.select([notify, ended], [], [], READY_TIMEOUT)[0]
            if notify not in readable:
                break
            ready = b"READY=1" in notify.recv(4096)
        os.close(ended)
        if not ready:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
            pytest.skip(f"dockerd did not start here: {' / '.join(tail)}")
        yield address
    finally:
        notify.close()
        stop(daemon, scratch)
        journal.current().removed(entry)
        log.close()


def docker(address: str, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["docker", "--host", address, *args], input=stdin, capture_output=True, check=True, timeout=READY_TIMEOUT
    )
    return done.stdout.decode().strip()


@pytest.fixture(scope="module")
def image(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The profile's image, imported from the harness's empty root (no registry is reachable)."""
    root = tmp_path_factory.mktemp("rootfs") / "rootfs"
    make_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
    docker(docker_host, "import", "-", IMAGE, stdin=tar)
    return IMAGE


def test_docker_profile_keeps_what_it_claims(
    docker_host: str, image: str, run_suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker run: every namespace it claims is conformant, no error, the behavioural mount checks run on the
    harness's volume and pass, no container left."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    run = run_suite("--nsc-runtime", "docker", CHECKS)
    assert not [r for r in run.report["results"] if r["outcome"] == "error"], run.output
    assert set(run.verdicts().values()) == {"conformant"}, run.output
    assert {"caps", "seccomp", "paths"} <= set(run.verdicts()), run.output  # the areas docker declares
    mounts = {r["check"]: r["outcome"] for r in run.report["results"] if r["check"] in MOUNT_BEHAVIOUR}
    assert mounts == dict.fromkeys(MOUNT_BEHAVIOUR, "passed"), run.output
    assert docker(docker_host, "ps", "--all", "--quiet") == ""


def test_attach_to_a_container_gives_the_profile_verdicts(
    docker_host: str, image: str, run_suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker inspect -f {{.State.Pid}}` then --nsc-attach: the verdicts and every check that runs are those of the
    docker profile's own sandboxes, and the container is as it was before."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    container = docker(
        docker_host,
        *("run", "--detach", "--network", "none", "--ipc", "private", "--hostname", "sandbox"),
        *("--volume", "/usr:/usr:ro", image, "/usr/bin/sleep", "infinity"),
    )
    try:
        pid = int(docker(docker_host, "inspect", "--format", "{{.State.Pid}}", container))
        before = target_state(pid)
        attached = run_suite("--nsc-attach", str(pid), "--nsc-runtime", "docker", CHECKS)
        after = target_state(pid)
    finally:
        docker(docker_host, "rm", "--force", container)
    launched = run_suite("--nsc-runtime", "docker", CHECKS)
    assert attached.report["runtime"]["attach"] == {"pid": pid, "claimed_from": "profile"}
    assert not [r for r in attached.report["results"] if r["outcome"] == "error"], attached.output
    assert attached.verdicts() == launched.verdicts()
    ran, reference = comparable(attached), comparable(launched)
    assert {check: reference.get(check) for check in ran} == ran
    assert after == before


def privileged_docker() -> ProfileRuntime:
    """The docker profile whose as-shipped sandbox runs `--privileged` (on the wrapper runtime), its promise
    still docker's defaults."""
    text = (PROFILES_DIR / "docker.toml").read_text()
    table = text.index("[hardening]")
    plain = '"--name", "{id}", "--network", "none",'
    assert plain in text[table:]
    privileged = f'{plain} "--privileged", "--runtime", "{PRIVILEGED_RUNTIME}",'
    return profile_runtime(text[:table] + text[table:].replace(plain, privileged), "docker-privileged")


def test_docker_as_shipped_keeps_its_defaults_and_privileged_breaks_them(
    docker_host: str, image: str, run_suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker's defaults (capabilities, seccomp profile, masked and read-only paths) are conformant with what
    the profile declares, the filter's refusals told apart from the kernel's; `--privileged` is violated in
    caps, seccomp and paths."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    areas = ("--nsc-areas", "caps,seccomp,paths", *AREA_CHECKS)
    run = run_suite("--nsc-runtime", "docker", *areas)
    assert not [r for r in run.report["results"] if r["outcome"] == "error"], run.output
    assert {a: run.verdicts()[a] for a in ("caps", "seccomp", "paths")} == dict.fromkeys(
        ("caps", "seccomp", "paths"), "conformant"
    ), run.output
    refusals = next(r for r in run.report["results"] if r["check"] == "seccomp.refuses_declared")["evidence"]
    assert {"keyctl", "unshare"} <= set(refusals["refused"]), refusals
    privileged = run_suite(*areas, runtime=privileged_docker())
    assert not [r for r in privileged.report["results"] if r["outcome"] == "error"], privileged.output
    assert {a: privileged.verdicts()[a] for a in ("caps", "seccomp", "paths")} == dict.fromkeys(
        ("caps", "seccomp", "paths"), "violated"
    ), privileged.output
    assert docker(docker_host, "ps", "--all", "--quiet") == ""


def test_docker_as_shipped_keeps_devices_knobs_sockets_and_privileged_breaks_them(
    docker_host: str, image: str, run_suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker's defaults keep the host's devices, knobs and sockets out of reach (conformant, the daemon's own
    socket on the host among the listeners it is matched against); `--privileged` (the host's /dev, every device
    allowed, /proc/sys writable) is violated in devices and knobs, not in sockets: it binds none in."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    names = ("devices", "knobs", "sockets")
    areas = ("--nsc-areas", ",".join(names), *(str(ROOT / "isolation_checks" / f"{area}.py") for area in names))
    run = run_suite("--nsc-runtime", "docker", *areas)
    assert not [r for r in run.report["results"] if r["outcome"] == "error"], run.output
    assert {a: run.verdicts()[a] for a in names} == dict.fromkeys(names, "conformant"), run.output
    privileged = run_suite(*areas, runtime=privileged_docker())
    assert not [r for r in privileged.report["results"] if r["outcome"] == "error"], privileged.output
    expected = {"devices": "violated", "knobs": "violated", "sockets": "conformant"}
    assert {a: privileged.verdicts()[a] for a in names} == expected, privileged.output
    assert docker(docker_host, "ps", "--all", "--quiet") == ""


def test_native_stays_conformant_on_a_host_with_containers_and_namespace_files(
    docker_host: str, image: str, run_suite
) -> None:
    """With a container of the test's dockerd running (its network namespace file under dockerd's exec root) and the
    host's network namespace file bound on the host (as a volume of /run/netns would hold one), the default native
    run is conformant in every namespace: its launcher detaches the namespace files it inherits. Without that
    (leak keep_ns_files), net is violated, and nothing else."""
    container = docker(
        docker_host,
        "run",
        "--detach",
        "--network",
        "none",
        "--volume",
        "/usr:/usr:ro",
        image,
        "/usr/bin/sleep",
        "infinity",
    )
    try:
        with host_namespace_file("net") as bound:
            with open("/proc/self/mountinfo") as f:
                files = [line.split()[4] for line in f if " - nsfs " in line]
            sound = run_suite(CHECKS)
            leaky = run_suite(
                "--nsc-namespaces", "net,mnt", CHECKS, runtime=NativeRuntime(leaks=frozenset({"keep_ns_files"}))
            )
    finally:
        docker(docker_host, "rm", "--force", container)
    assert bound in files and any("/exec/netns/" in path for path in files), files
    assert not [r for r in sound.report["results"] if r["outcome"] == "error"], sound.output
    assert set(sound.verdicts().values()) == {"conformant"}, sound.output
    assert leaky.verdicts() == {"net": "violated", "mnt": "conformant"}, leaky.output
    assert "failed" in leaky.outcomes("net.no_foreign_namespace_file").values()
