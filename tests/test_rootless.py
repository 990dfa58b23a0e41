"""Rootless mode: the conformance suite run by an unprivileged user, every sandbox nested in a user namespace.

The user is `nsconform` (a system user install.sh creates). It may read neither the checkout nor
the venv where they lie under /root, so the run uses copies the user can read, in a scratch dir
given to it and removed after: the suite's files, and the installed distributions nsconform
needs (found from its requirements), on PYTHONPATH of the venv's base interpreter.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from nsconform.host.observe import scratch_dir
from nsconform.namespaces import combo_id
from tests.conftest import ROOT, validate_written

USER = "nsconform"
# The run checks the default namespaces; these must come out conformant (every other one that has checks too).
CONFORMANT = ("uts", "pid", "mnt", "ipc", "user")
# Checks that must pass on every combination they apply to in a rootless run (one or more per namespace).
MUST_PASS = (
    "uts.hostname_private",
    "uts.names_shared",
    "pid.init_is_pid_1",
    "pid.host_pid_unreachable",
    "pid.host_pids_visible",
    "ipc.sysv_objects_hidden_from_host",
    "ipc.posix_shm_private",
    "mnt.mount_hidden_from_host",
    "mnt.fresh_proc",
    "mnt.mount_table_shared",
    "user.id_maps_as_declared",
    "user.root_is_not_host_root",
    "user.file_owner_mapped",
    "user.shared_hostname_unchangeable",
    "user.host_root_process_unsignalable",  # aimed at the host's init, root on any usual host
    "user.setgroups_denied_where_required",
    "user.no_capability_over_host",
)
# Checks that need root on the host (a shared mount point of its own, a root-only file): skipped.
NEED_ROOT = (
    "mnt.unmount_stays_inside",
    "mnt.mount_inside_does_not_propagate",
    "mnt.host_mount_does_not_propagate",
    "user.host_root_file_unreadable",
)


def as_user(user: pwd.struct_passwd) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]


def world_usable(path: str) -> bool:
    """Whether anyone may execute `path`: every directory above it searchable, the file r-x for others."""
    real = Path(os.path.realpath(path))
    dirs_ok = all(os.stat(parent).st_mode & stat.S_IXOTH for parent in real.parents)
    return dirs_ok and os.stat(real).st_mode & (stat.S_IROTH | stat.S_IXOTH) == stat.S_IROTH | stat.S_IXOTH


@pytest.fixture
def rootless_user() -> pwd.struct_passwd:
    """The unprivileged user, where this host lets it make user namespaces; else a skip saying why not."""
    if os.geteuid() != 0:
        pytest.skip("starting a run as another, unprivileged user needs root")
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no user {USER}: install.sh creates it")
    if shutil.which("setpriv") is None or shutil.which("unshare") is None:
        pytest.skip("setpriv and unshare (util-linux) are needed to run as the user")
    tried = subprocess.run(
        [*as_user(user), "unshare", "--user", "--map-root-user", "true"], capture_output=True, text=True, timeout=30
    )
    if tried.returncode != 0:
        pytest.skip(f"unprivileged user namespaces are not available here: {tried.stderr.strip()}")
    if not world_usable(sys.executable):
        pytest.skip(f"the interpreter {os.path.realpath(sys.executable)} is not usable by other users")
    return user


def requirement_closure(name: str) -> dict[str, metadata.Distribution]:
    """The installed distributions that `name` needs, transitively (markers evaluated, no extras)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        dist = metadata.distribution(todo.pop())
        key = canonicalize_name(dist.metadata["Name"])
        if key in found:
            continue
        found[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    for file in dist.files or []:
        if file.parts[0] == ".." or "__pycache__" in file.parts:
            continue  # scripts outside site-packages; byte code is compiled again if needed
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dist.locate_file(file), target)


def copy_package(site: Path) -> None:
    """nsconform as a wheel installs it, from this checkout: each package's folder (pyproject.toml's
    package-dir) copied to where its name puts it under `site`."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    ignore = shutil.ignore_patterns("__pycache__")
    for name, folder in sorted(setuptools["package-dir"].items()):
        shutil.copytree(ROOT / folder, site.joinpath(*name.split(".")), ignore=ignore, dirs_exist_ok=True)


def traces(user: pwd.struct_passwd, tmp: Path) -> set[str]:
    """What the user has running and in the temp dir."""
    found = {f"process {p.pid}" for p in psutil.process_iter() if safe_uid(p) == user.pw_uid}
    return found | {f"path {path}" for path in tmp.iterdir() if path.lstat().st_uid == user.pw_uid}


def safe_uid(proc: psutil.Process) -> int | None:
    try:
        return proc.uids().real
    except psutil.Error:
        return None


# Runs a command as UID:GID inside a user namespace of its own (UID and root mapped one to one) whose
# user.max_user_namespaces is 0: there, that user may make no user namespace, as on a host that forbids them.
WITHOUT_USER_NAMESPACES = """
import ctypes, os, sys
uid, gid, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
unshared_r, unshared_w = os.pipe()
mapped_r, mapped_w = os.pipe()
child = os.fork()
if child == 0:
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:  # CLONE_NEWUSER
        os._exit(97)
    os.write(unshared_w, b"u")
    os.read(mapped_r, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as limit:
        limit.write("0")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    os.execv(command[0], command)
os.read(unshared_r, 1)
for name, ident in (("uid_map", uid), ("gid_map", gid)):
    with open(f"/proc/{child}/{name}", "w") as f:
        f.write(f"0 0 1\\n{ident} {ident} 1\\n")
os.write(mapped_w, b"m")
sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
"""


def without_user_namespaces(user: pwd.struct_passwd) -> list[str]:
    return [sys.executable, "-c", WITHOUT_USER_NAMESPACES, str(user.pw_uid), str(user.pw_gid)]


def run_as(
    user: pwd.struct_passwd, prefix: list[str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], list[str]]:
    """The suite run by `user` with the `nsconform` command, from copies it can read (started by `prefix`,
    by default setpriv as `user`); its result, report and what it left behind."""
    tmp = Path(tempfile.gettempdir())
    before = traces(user, tmp)
    with scratch_dir("rootless", owner=(user.pw_uid, user.pw_gid)) as workspace:
        site, out = Path(workspace, "site"), Path(workspace, "out")
        for dist in requirement_closure("nsconform").values():
            if canonicalize_name(dist.metadata["Name"]) != "nsconform":  # an editable install: copied below
                copy_distribution(dist, site)
        copy_package(site)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": workspace,
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(site),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        # --no-host-audit: the audit compares the whole host, which the project's other tests, running
        # meanwhile, change; what this run leaves is checked below, for what the user can leave.
        args = ["-q", "-n", "2", "--basetemp", f"{workspace}/basetemp", "--no-host-audit", f"--report-dir={out}"]
        done = subprocess.run(
            [*(prefix or as_user(user)), os.path.realpath(sys.executable), "-m", "nsconform", *args],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        report_path = out / "conformance.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        if report:
            validate_written(report, report_path)  # written outside the test's tmp_path, and removed below
        left = sorted(traces(user, tmp) - before - {f"path {workspace}"})
    return done, report, left


def test_suite_runs_rootless(rootless_user: pwd.struct_passwd, quiet_host: None) -> None:
    """Run by an unprivileged user, the suite's verdicts are conformant: namespace checks pass inside user
    namespaces, the checks that cannot hold there skip with their reason, and nothing is left behind."""
    done, report, left = run_as(rootless_user)
    output = done.stdout[-3000:] + done.stderr[-2000:]
    assert report, f"the rootless run wrote no report:\n{output}"
    results = report["results"]
    bad = [(r["id"], r["reason"][:300]) for r in results if r["outcome"] in ("failed", "error")]
    assert done.returncode == 0, f"{bad}\n{output}"
    verdicts = {ns: s["verdict"] for ns, s in report["summary"].items() if s["verdict"] != "untested"}
    assert set(CONFORMANT) <= set(verdicts) and set(verdicts.values()) == {"conformant"}, verdicts
    assert not [r["id"] for r in results if r["outcome"] in ("failed", "error")], output

    by_check: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_check.setdefault(r["check"], {})[combo_id(r["combination"])] = r
    for check in MUST_PASS:
        outcomes = {combo: r["outcome"] for combo, r in by_check[check].items()}
        assert outcomes and set(outcomes.values()) == {"passed"}, f"{check}: {outcomes}"

    # Root inside is the user outside, mapped one to one, with setgroups denied.
    uid, gid = rootless_user.pw_uid, rootless_user.pw_gid
    maps = by_check["user.id_maps_as_declared"]["user"]["evidence"]
    assert maps["uid_map inside"] == [[0, uid, 1]] and maps["gid_map inside"] == [[0, gid, 1]]
    assert by_check["user.file_owner_mapped"]["user"]["evidence"]["host_owner"] == [uid, gid]
    assert by_check["user.setgroups_denied_where_required"]["user"]["evidence"]["setgroups"] == "deny"
    assert by_check["user.root_is_not_host_root"]["user"]["evidence"]["host_uids"] == [uid, uid, uid]

    # Where user is not claimed, the sandbox still has a user namespace: "user shared" cannot hold.
    for check in ("user.namespace_identity", "user.id_maps_shared"):
        unclaimed = {combo: r for combo, r in by_check[check].items() if "user" not in (r["combination"] or ())}
        assert unclaimed and all(r["outcome"] == "skipped" for r in unclaimed.values()), check
        assert all(
            "rootless run" in r["reason"] and "its own user namespace" in r["reason"] for r in unclaimed.values()
        )
    # What needs root on the host (a shared mount point, a root-only file) skips, saying so.
    for check in NEED_ROOT:
        assert {r["outcome"] for r in by_check[check].values()} == {"skipped"}, check
        assert all("needs root on the host" in r["reason"] for r in by_check[check].values()), check
    assert all(r["reason"] for r in results if r["outcome"] == "skipped")

    assert not left, f"the rootless run left behind: {left}"


def test_rootless_without_user_namespaces_is_a_usage_error(rootless_user: pwd.struct_passwd, quiet_host: None) -> None:
    """1. the unprivileged user, where it may make no user namespace (max_user_namespaces 0 in a user
    namespace of its own); 2. it runs the suite; 3. EXPECT a usage error that says why and what to do,
    before any check: no report, nothing left behind"""
    done, report, left = run_as(rootless_user, prefix=without_user_namespaces(rootless_user))
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-2000:] + done.stderr[-2000:]
    assert "not root, and the kernel refuses this user a user namespace (No space left on device)" in done.stderr
    assert "run as root, or allow unprivileged user namespaces" in done.stderr
    assert not report
    assert not left, f"the run left behind: {left}"


def test_journal_directory_is_the_users_own_where_home_is_roots(rootless_user: pwd.struct_passwd) -> None:
    """`setpriv --reuid` keeps root's HOME (/root, mode 700), as docs/running.md's rootless command runs: the
    user's journal directory is then one it may make, in the temporary directory, 0700 and its own."""
    code = "from nsconform.hygiene import journal; print(journal.directory())"
    expected = Path(tempfile.gettempdir(), f"nsconform-{rootless_user.pw_uid}")
    existed = expected.exists()
    try:
        with scratch_dir("rootless", owner=(rootless_user.pw_uid, rootless_user.pw_gid)) as workspace:
            site = Path(workspace, "site")
            copy_package(site)  # a copy the user can read, wherever the checkout lies
            env = {
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": "/root",
                "TMPDIR": tempfile.gettempdir(),
                "PYTHONPATH": str(site),
            }
            done = subprocess.run(
                [*as_user(rootless_user), os.path.realpath(sys.executable), "-c", code],
                env=env,
                capture_output=True,
                text=True,
                cwd="/",
            )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(expected)
        st = expected.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == rootless_user.pw_uid and stat.S_IMODE(st.st_mode) == 0o700
    finally:
        if not existed and expected.is_dir():
            expected.rmdir()
