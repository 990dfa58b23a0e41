"""Hygiene: a run touches only what its journals say it made; the audit judges that run alone.

Harness processes that die without cleaning up are played by helper processes that make objects
through the journal (nsconform.hygiene.journal) and exit at once, or by real runs SIGKILLed at a
moment a FIFO announces. Objects that merely look like the harness's (tests/lookalikes.py) must
survive every run, killed or not, and every reaping.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import pytest

from nsconform.host.observe import make_scratch_dir
from nsconform.hygiene import identity, journal, objects, reaper
from nsconform.hygiene.journal import Written
from nsconform.inside import probe
from tests.conftest import ROOT, check_node
from tests.lookalikes import lookalikes
from tests.runtime_profiles import profile_runtime
from tests.test_reliability import PYTEST, outcomes, run_pytest

# A harness process that makes one object of each kind through the journal, then dies without
# cleaning up (os._exit, as a SIGKILL would leave it): what it made, as JSON on stdout.
DYING = r"""
import json, os, socket, subprocess, sys
from nsconform.host import mounts
from nsconform.host.observe import Host, make_scratch_dir
from nsconform.hygiene import journal, naming
record = journal.current()
made = {"token": journal.token()}
made["dir"], _ = make_scratch_dir("dying")
inner = os.path.join(made["dir"], "inner")
os.mkdir(inner)
made["key"] = naming.ipc_key()
held = [mounts.tmpfs_on(inner), Host().shm_file(naming.unique("shm")), Host().ipc_object("shm", made["key"])]
made["tmpfs"], made["shm"], made["sysv"] = (block.__enter__() for block in held)  # and never left
made["links"] = [naming.link_name(), naming.link_name()]
alias = naming.link_alias()
link = record.record("link", made["links"][0], peer=made["links"][1], alias=alias)
subprocess.run(["ip", "link", "add", made["links"][0], "type", "veth", "peer", "name", made["links"][1]], check=True)
subprocess.run(["ip", "link", "set", made["links"][0], "alias", alias], check=True)
record.made(link, ifindex=socket.if_nametoindex(made["links"][0]))
tag = naming.unique("probe")
process = record.record("process", tag)
sleeper = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import signal; signal.pause()", tag],
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
record.made_process(process, sleeper.pid)
made["sleeper"] = sleeper.pid
made["intent_only"] = naming.scratch_path("intent")  # made, its identity never written (a crash between):
record.record("path", made["intent_only"])       # nothing proves it the journal's, it is reported
os.mkdir(made["intent_only"])
made["not_its_name"] = sys.argv[1]  # a name without its token, recorded but someone else's: never removed
record.record("path", made["not_its_name"])
made["journal"] = str(record.path)
print(json.dumps(made), flush=True)
os._exit(0)
"""


def dying_harness_process(not_its_name: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", DYING, not_its_name], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def still_there(made: dict[str, Any]) -> list[str]:
    """Which of the dying process's objects are on the host."""
    found = [path for path in (made["dir"], f"/dev/shm/{made['shm']}") if os.path.lexists(path)]
    found += [f"tmpfs {made['tmpfs']}" for row in probe.mountinfo() if row[4] == made["tmpfs"]]
    found += [f"sysv {made['key']:#x}" for row in objects.sysv_objects("shm") if row["key"] == made["key"]]
    found += [f"link {name}" for name in made["links"] if name in link_names()]
    found += [f"process {made['sleeper']}"] if not objects.zombie(made["sleeper"]) else []
    return found


def link_names() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


def test_reaper_removes_exactly_what_dead_journals_list(tmp_path: Path) -> None:
    """1. look-alikes of five kinds, a journaled dir of this live process, and a dead harness process's
    objects of every kind (one recorded by intent only, one recorded under a name that is not its own)
    2. reap; 3. EXPECT the dead process's objects gone but the one recorded by intent only, which nothing
    proves its own, and the name that is not its own: both reported and untouched, the journal kept;
    this process's dir and every look-alike in place"""
    someone_elses = tmp_path / "someone-elses"
    someone_elses.mkdir()
    live, live_entry = make_scratch_dir("live")
    with lookalikes() as others:
        made = dying_harness_process(str(someone_elses))
        try:
            assert len(still_there(made)) == 7, still_there(made)
            reaped = reaper.reap()
            with journal.abandoned(Path(made["journal"]), wait=True) as written:  # another run may reap it too
                assert written is not None
                reaped += reaper.reap_journal(written)
            await_pidfd(made["sleeper"], kill=False)
            assert still_there(made) == [], reaped
            assert [line for line in reaped if line.startswith(f"left alone: path {someone_elses}")], reaped
            assert [line for line in reaped if line.startswith(f"left alone: path {made['intent_only']}")], reaped
            assert someone_elses.is_dir() and Path(live).is_dir() and Path(made["intent_only"]).is_dir()
            assert Path(made["journal"]).exists()  # kept: it lists what could not be told for its own
            assert others.missing() == []
        finally:
            Path(made["journal"]).unlink(missing_ok=True)
            os.rmdir(made["intent_only"])
            os.rmdir(live)
            journal.current().removed(live_entry)


def test_a_corrupt_journal_is_reported_and_left_alone() -> None:
    """A journal whose lock is free but whose content is not a journal's: named by the reaper, not touched."""
    corrupt = journal.directory() / f"corrupt-{journal.token()}.journal"
    corrupt.write_bytes(b'{"journal": 1, "run": "x"}\nnot json\n')
    try:
        reaped = reaper.reap()
        assert [line for line in reaped if line.startswith(f"left alone: journal {corrupt}")], reaped
        assert corrupt.read_bytes() == b'{"journal": 1, "run": "x"}\nnot json\n'
    finally:
        corrupt.unlink()


def test_a_record_cut_short_by_a_crash_is_left_out(tmp_path: Path) -> None:
    """A dead journal whose last line lacks its newline (its process died writing it): the complete records
    are reaped as usual (here a directory made), the cut one (its removal) is ignored."""
    token = "c0ffee00"
    made = tmp_path / f"nsconform-feedf00d-{token}-dir1-x"
    made.mkdir()
    header = {"journal": 2, "run": "feedf00d", "role": "gw9", "token": token, "pid": 1 << 22, "start": 1, "uid": 0}
    lines = [
        header,
        {"seq": 1, "op": "intent", "kind": "path", "name": str(made)},
        {"seq": 1, "op": "made", **identity.path_identity(str(made))},
    ]
    cut = journal.directory() / f"cut-{journal.token()}.journal"
    cut.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"seq": 1, "op": "re')
    try:
        with journal.abandoned(cut, wait=True) as written:  # another run's reaper may have taken it already
            reaped = reaper.reap_journal(written) if written is not None else []
        assert not made.exists() and not cut.exists(), reaped
    finally:
        cut.unlink(missing_ok=True)


# -- whole runs ---------------------------------------------------------------------------------


@contextmanager
def announced(env_name: str, tmp_path: Path, name: str) -> Iterator[tuple[Path, dict[str, str]]]:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    yield fifo, {env_name: str(fifo)}


def start_killable(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*PYTEST, "-p", "tests.killpoint", "-n", "2", f"--nsc-report-dir={tmp_path / 'killed'}", *args],
        cwd=ROOT,
        start_new_session=True,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def journals_of(pids: set[int]) -> list[Written]:
    found = []
    for path in journal.files():
        try:
            written = journal.parse(path, path.read_bytes())
        except (OSError, journal.JournalError):
            continue
        if written.header["pid"] in pids:
            found.append(written)
    return found


def settled(written: list[Written]) -> None:
    """Wait until no reaper holds these dead journals (another test's run may be reaping them too)."""
    for one in written:
        with journal.abandoned(one.path, wait=True):
            pass


def on_host(written: list[Written]) -> list[str]:
    """Which objects these journals list as not removed are still on the host as recorded."""
    left = []
    for one in written:
        owner = objects.Owner.of(one.header)
        left += [objects.describe(e) for e in one.left if objects.present(e, owner)]
    return left


def test_lookalikes_survive_a_run_a_killed_run_and_the_rerun_that_reaps_it(tmp_path: Path) -> None:
    """1. look-alikes of five kinds; 2. a full run with the audit; 3. a run SIGKILLed (controller and
    workers) while its sandboxes live; 4. a rerun, which reaps the killed run's journals
    5. EXPECT the full run clean and passing, the killed run's objects gone with its journals, the
    look-alikes untouched throughout"""
    with lookalikes() as others:
        full = run_pytest("-n", "2", f"--nsc-report-dir={tmp_path / 'full'}", audit=True)
        assert full.returncode == 0, full.stdout[-3000:]
        report = json.loads((tmp_path / "full" / "conformance.json").read_text())
        assert report["host_audit"]["left"] == []
        assert others.missing() == []

        with announced("NSCONFORM_KILLPOINT", tmp_path, "killpoint") as (fifo, env):
            run = start_killable(tmp_path, env, "--nsc-namespaces", "uts,pid,ipc,mnt,net")
            try:
                with open(fifo) as announcements:
                    _, sandbox_pid = map(int, announcements.readline().split())
                pids = {run.pid, *(p.pid for p in psutil.Process(run.pid).children(recursive=True))}
                killed = journals_of(pids)
            finally:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        assert killed and on_host(killed), "the killed run had made nothing to reap"
        rerun = run_pytest("--nsc-namespaces", "uts", f"--nsc-report-dir={tmp_path / 'rerun'}", audit=True)
        assert rerun.returncode == 0, rerun.stdout[-3000:]
        settled(killed)
        assert not [one.path for one in killed if one.path.exists()]
        assert on_host(killed) == []
        assert not psutil.pid_exists(sandbox_pid) or psutil.Process(sandbox_pid).status() == psutil.STATUS_ZOMBIE
        assert others.missing() == []


def test_killed_controller_with_live_workers_is_reaped_alone(tmp_path: Path) -> None:
    """1. a run whose controller makes a journaled dir; 2. SIGKILL of the controller alone while a worker
    hangs in a check with its sandbox alive; 3. the reaper a next run starts with (called at once: an
    orphaned xdist worker ends itself some seconds later)
    4. EXPECT the controller's dir reaped, the live worker's journal, sandbox and objects untouched
    5. SIGKILL of the worker; the next run reaps; EXPECT the worker's objects gone with its journal"""
    with (
        announced("NSCONFORM_KILLPOINT", tmp_path, "killpoint") as (fifo, env),
        announced("NSCONFORM_KILLPOINT_CONTROLLER", tmp_path, "controller") as (controller_fifo, controller_env),
    ):
        run = start_killable(tmp_path, {**env, **controller_env}, "--nsc-namespaces", "uts,pid,mnt")
        try:
            with open(controller_fifo) as announcements:
                controller_pid, controller_dir = announcements.readline().split()
            with open(fifo) as announcements:
                worker_pid, sandbox_pid = map(int, announcements.readline().split())
            assert int(controller_pid) == run.pid
            run.kill()
            run.wait()
            worker = journals_of({worker_pid})
            workers_objects = on_host(worker)
            assert workers_objects and psutil.pid_exists(worker_pid)
            controller = journals_of({run.pid})
            reaper.reap()
            settled(controller)  # reaped here, or by another test's run meanwhile
            assert controller and not controller[0].path.exists()
            assert not os.path.exists(controller_dir)
            assert psutil.pid_exists(sandbox_pid) and worker[0].path.exists()
            assert on_host(worker) == workers_objects
            await_pidfd(worker_pid, kill=True)
        finally:
            with suppress(ProcessLookupError):  # the group is gone once every member is
                os.killpg(run.pid, signal.SIGKILL)
    rerun = run_pytest("--nsc-namespaces", "uts", f"--nsc-report-dir={tmp_path / 'rerun'}")
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    settled(worker)
    assert on_host(worker) == [] and not worker[0].path.exists()


def test_a_killed_runs_volume_replaced_by_hand_is_left_with_what_is_in_it(tmp_path: Path) -> None:
    """The by-hand case of a reused inode: 1. a run SIGKILLed while its sandboxes live; 2. by hand, its mounts
    in its volumes unmounted and the volumes removed, then at each volume's path a directory of the user's
    with a file, and a tmpfs where the run had its first mount in it (else in a directory of its own)
    3. a rerun, which reaps the killed run's journals; 4. EXPECT every directory, file and tmpfs in place"""
    with announced("NSCONFORM_KILLPOINT", tmp_path, "killpoint") as (fifo, env):
        run = start_killable(tmp_path, env, "--nsc-namespaces", "uts,pid,mnt,ipc")
        try:
            with open(fifo) as announcements:
                announcements.readline()
            pids = {run.pid, *(p.pid for p in psutil.Process(run.pid).children(recursive=True))}
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    killed = journals_of(pids)
    listed = [entry for one in killed for entry in one.left]
    volumes = [e.name for e in listed if e.kind == "path" and re.search(r"-volume\d+-", os.path.basename(e.name))]
    assert volumes, [e.name for e in listed]
    users: list[tuple[str, str]] = []  # (directory, tmpfs mount point) of the user's
    try:
        for volume in volumes:
            table = probe.mountinfo()
            for point in sorted((row[2] for row in table if row[2].startswith(volume + "/")), key=len, reverse=True):
                probe.unmount(point, detach=True)
            shutil.rmtree(volume)
            os.mkdir(volume)
            Path(volume, "notes").write_text("the user's\n")
            recorded = [e.name for e in listed if e.kind == "mount" and e.name.startswith(volume + "/")]
            point = recorded[0] if recorded else os.path.join(volume, "inner")
            os.makedirs(point)
            probe.mount_tmpfs(point, "users-tmpfs")
            users.append((volume, point))
        rerun = run_pytest("--nsc-namespaces", "uts", f"--nsc-report-dir={tmp_path / 'rerun'}")
        assert rerun.returncode == 0, rerun.stdout[-3000:]
        settled(killed)
        mounted = {(row[2], row[4]) for row in probe.mountinfo()}
        for volume, point in users:
            assert Path(volume, "notes").read_text() == "the user's\n", rerun.stdout[-3000:]
            assert (point, "users-tmpfs") in mounted, rerun.stdout[-3000:]
    finally:
        for volume, point in users:
            with suppress(OSError):
                probe.unmount(point, detach=True)
            shutil.rmtree(volume, ignore_errors=True)


def await_pidfd(pid: int, *, kill: bool) -> None:
    """SIGKILL process `pid` if asked, and wait on a pidfd until it has exited (if it has not already)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if kill:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], 30)
    finally:
        os.close(fd)


# A process unrelated to nsconform that makes and removes links, /dev/shm files and mounts until its
# stdin closes; it reports each round on stdout.
CHURN = r"""
import ctypes, os, secrets, select, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
base = f"/tmp/churn-{secrets.token_hex(4)}"
os.mkdir(base)
rounds = 0
while not select.select([sys.stdin], [], [], 0.01)[0] and rounds < 20000:
    name = f"ch{secrets.token_hex(4)}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
    open(f"/dev/shm/{name}", "w").close()
    point = f"{base}/{name}"
    os.mkdir(point)
    assert libc.mount(b"churn", point.encode(), b"tmpfs", 0, b"size=16k") == 0
    assert libc.umount2(point.encode(), 2) == 0
    os.rmdir(point)
    os.unlink(f"/dev/shm/{name}")
    subprocess.run(["ip", "link", "del", name], check=True)
    rounds += 1
os.rmdir(base)
print(rounds)
"""
CONCURRENT = ("--nsc-namespaces", "uts,ipc,mnt,net")


def test_two_runs_at_once_with_an_unrelated_process_churning(tmp_path: Path) -> None:
    """1. a solo run; 2. two runs at once while an unrelated process makes and removes links, /dev/shm files
    and mounts; 3. EXPECT both to pass, with the audit, and every result as in the solo run"""
    solo = run_pytest(*CONCURRENT, f"--nsc-report-dir={tmp_path / 'solo'}", audit=True)
    assert solo.returncode == 0, solo.stdout[-3000:]
    churn = subprocess.Popen(
        [sys.executable, "-I", "-c", CHURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        runs = [
            subprocess.Popen(
                [*PYTEST, *CONCURRENT, f"--nsc-report-dir={tmp_path / name}", *extra],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name, extra in (("a", ()), ("b", ("-n", "2")))
        ]
        done = [(run.communicate(timeout=600)[0], run.returncode) for run in runs]
    finally:
        rounds, _ = churn.communicate("stop", timeout=60)
    assert churn.returncode == 0 and int(rounds) > 0
    for output, status in done:
        assert status == 0, output[-3000:]
    expected = outcomes(tmp_path / "solo")
    assert outcomes(tmp_path / "a") == expected
    assert outcomes(tmp_path / "b") == expected


class LeavesUnrelated:
    """A plugin that, during the run, makes a /dev/shm file named like the harness's, outside any journal:
    as another program would meanwhile."""

    def __init__(self) -> None:
        self.path = Path("/dev/shm", f"nsconform-gw0-1-unrelated-{journal.token()}")

    def pytest_runtest_setup(self) -> None:
        self.path.touch()


def test_audit_reports_what_the_runtime_left_and_what_changed_meanwhile(run_suite, tmp_path: Path) -> None:
    """1. a runtime that leaves a /dev/shm file named by the container id it is given; meanwhile another
    'program' makes a file named like the harness's; 2. the run, with the audit
    3. EXPECT it passes: the runtime's file reported as the runtime's, the other as changed meanwhile"""
    runtime = profile_runtime(
        """
name = "leaves-shm"
requires = ["unshare", "sh", "touch"]
command = ["sh", "-c", 'touch "/dev/shm/$0" && exec unshare --uts --fork --kill-child -- "$@"', "{id}"]
isolates = ["uts"]
""",
        "leaves-shm",
    )
    other = LeavesUnrelated()
    runtime_left: list[str] = []
    try:
        node = check_node("uts.hostname_private", "uts")
        run = run_suite("--nsc-namespaces", "uts", node, runtime=runtime, plugins=(other,), audit=True)
        audit = run.report["host_audit"]
        runtime_left = audit["runtime_left"].get("dev_shm", {}).get("added", [])
    finally:
        other.path.unlink(missing_ok=True)
        for name in runtime_left:
            Path("/dev/shm", name).unlink(missing_ok=True)
    assert run.ret == pytest.ExitCode.OK, run.output
    assert audit["left"] == []
    assert len(runtime_left) == 1 and audit["run"] in runtime_left[0] and "-ct" in runtime_left[0]
    assert other.path.name in audit["changed_meanwhile"]["dev_shm"]["added"]
    assert "nsconform host audit: the runtime left" in run.output
    assert "nsconform host audit: changed meanwhile, not by this run" in run.output
