"""The reaper removes only what it can prove a dead journal's: forged journals name objects a user made.

For every kind of object a journal holds, a "user" (this test) makes an object, and a dead journal is
written whose recorded identity matches that object in everything a later object could share with the
journal's (its name, inode number, ifindex, SysV key and id, pid, mount id) but not in what only the
journal's object had (birth time, generation, unique mount id, ifalias, creation time, start time):
deterministically what inode, index, id or pid reuse would give. A journal of the previous version,
which recorded reusable identities only, is forged too. The reaper must leave every such object and say
so. The forged journals live in the test's own directory, never in the journal directory that other
runs on this machine reap.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from nsconform.hygiene import identity, journal, naming, objects, reaper
from nsconform.inside import probe

DEAD = 1 << 22  # above pid_max's default: no process has this pid


def reap_forged(tmp_path: Path, entries: list[dict[str, Any]], version: int = journal.VERSION) -> tuple[str, bool]:
    """Write a dead journal of `entries` (intent and made records) and reap it: the reaper's lines, and
    whether it kept the journal."""
    header = {"journal": version, "run": "f0f0f0f0", "role": "gw0", "token": "0badf00d", "pid": DEAD,
              "start": 1, "uid": os.geteuid()}  # fmt: skip
    forged = tmp_path / "forged.journal"
    forged.write_text("".join(json.dumps(line) + "\n" for line in [header, *entries]))
    with journal.abandoned(forged) as written:
        assert written is not None
        lines = reaper.reap_journal(written)
    return "\n".join(lines), forged.exists()


def made(kind: str, name: str, recorded: dict[str, Any] | None, **details: Any) -> list[dict[str, Any]]:
    entries = [{"seq": 1, "op": "intent", "kind": kind, "name": name, **details}]
    return entries + ([{"seq": 1, "op": "made", **recorded}] if recorded is not None else [])


def earlier(btime: list[int] | None) -> list[int] | None:
    """A birth time of an earlier object (the one whose inode number the user's reused)."""
    return None if btime is None else [btime[0] - 3600, btime[1]]


# -- paths --------------------------------------------------------------------------------------


@pytest.fixture(params=["tmp", "shm"])
def users_path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A user's directory with a file in it (on the temp dir's filesystem: ext4 here, birth time and
    generation), or a user's file in /dev/shm (tmpfs: birth time, no generation)."""
    if request.param == "tmp":
        path = tmp_path / "users-dir"
        path.mkdir()
        (path / "notes").write_text("the user's\n")
        yield path
        return
    path = Path("/dev/shm", f"users-{os.getpid()}-{naming.unique('x')}")
    path.write_text("the user's\n")
    try:
        yield path
    finally:
        path.unlink()


def test_a_path_with_a_reused_inode_is_left_and_said(tmp_path: Path, users_path: Path) -> None:
    """1. the journal records the user's device and inode with an earlier birth time and another generation
    2. reap; 3. EXPECT the path and its content in place, the reaper saying it is not the one recorded"""
    found = identity.path_identity(str(users_path))
    assert found["btime"] is not None, "this filesystem keeps no birth time: nothing to forge against"
    generation = None if found["generation"] is None else found["generation"] ^ 1
    forged = {**found, "btime": earlier(found["btime"]), "generation": generation}
    said, kept = reap_forged(tmp_path, made("path", str(users_path), forged))
    assert f"left alone: path {users_path}" in said and "is not the one recorded" in said, said
    assert users_path.exists() and not kept  # the journal's own is gone: nothing left to reap
    if users_path.is_dir():
        assert (users_path / "notes").read_text() == "the user's\n"


def test_a_previous_versions_journal_is_read_and_its_unproven_path_left(tmp_path: Path, users_path: Path) -> None:
    """A version-1 journal (device and inode only), matching the user's path: left, said, the journal kept."""
    found = os.lstat(users_path)
    said, kept = reap_forged(tmp_path, made("path", str(users_path), {"dev": found.st_dev, "ino": found.st_ino}), 1)
    assert f"left alone: path {users_path}" in said and "records no btime or generation" in said, said
    assert users_path.exists() and kept


def test_a_path_recorded_by_intent_only_is_left_and_said(tmp_path: Path, users_path: Path) -> None:
    said, kept = reap_forged(tmp_path, made("path", str(users_path), None))
    assert f"left alone: path {users_path}" in said and "never recorded made" in said, said
    assert users_path.exists() and kept


# -- mounts -------------------------------------------------------------------------------------


@contextmanager
def users_tmpfs(point: Path) -> Iterator[list[Any]]:
    """A tmpfs the user mounts at `point`: its mountinfo row."""
    point.mkdir(exist_ok=True)
    probe.mount_tmpfs(str(point), "users-tmpfs")
    try:
        (point / "data").write_text("the user's\n")
        yield objects.topmost(str(point))  # type: ignore[misc]
    finally:
        probe.unmount(str(point), detach=True)


def mounted(point: Path) -> bool:
    return any(row[2] == str(point) and row[4] == "users-tmpfs" for row in probe.mountinfo())


def test_a_mount_with_a_reused_mount_id_is_left_and_said(tmp_path: Path) -> None:
    """1. the journal records the user's mount id with another unique id (or, version 1, none)
    2. reap; 3. EXPECT the user's tmpfs mounted with its content, the reaper saying why"""
    point = tmp_path / "point"
    with users_tmpfs(point) as row:
        unique = identity.mount_unique_id(str(point))
        if unique is None:
            pytest.skip("this kernel gives mounts no unique id (STATX_MNT_ID_UNIQUE, Linux 6.8)")
        forged = {"mount_id": int(row[0]), "mnt_id_unique": unique - 1}
        said, kept = reap_forged(tmp_path, made("mount", str(point), forged, source="users-tmpfs"))
        assert f"left alone: mount {point}" in said and "is not the one recorded" in said, said
        assert mounted(point) and (point / "data").exists()
        said, kept = reap_forged(tmp_path, made("mount", str(point), {"mount_id": int(row[0])}), 1)
        assert f"left alone: mount {point}" in said and "records no mnt_id_unique" in said, said
        assert mounted(point) and kept


def test_a_proven_directory_with_a_mount_it_did_not_record_is_left_and_said(tmp_path: Path) -> None:
    """1. a directory whose journal is true (its identity recorded as the harness records it), and a user's
    tmpfs mounted in it, which the journal does not list; 2. reap
    3. EXPECT the directory, the tmpfs and its content in place, the reaper naming the mount"""
    directory = tmp_path / "proven"
    directory.mkdir()
    recorded = identity.path_identity(str(directory))
    with users_tmpfs(directory / "inner"):
        said, kept = reap_forged(tmp_path, made("path", str(directory), recorded))
        assert f"left alone: path {directory}" in said and str(directory / "inner") in said, said
        assert mounted(directory / "inner") and (directory / "inner" / "data").exists() and kept


# -- links --------------------------------------------------------------------------------------


@pytest.fixture
def users_link() -> Iterator[tuple[str, int]]:
    name = f"usr{os.getpid() % 10**6}x{naming.link_name()[-3:]}"[:15]
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name[:-1] + "p"], check=True)
    try:
        yield name, socket.if_nametoindex(name)
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_a_link_with_a_reused_name_and_index_is_left_and_said(tmp_path: Path, users_link: tuple[str, int]) -> None:
    """1. the journal records the user's link name and ifindex, and the ifalias its own link had
    2. reap; 3. EXPECT the user's link in place, the reaper saying its ifalias is not the recorded one"""
    name, index = users_link
    intent = made("link", name, {"ifindex": index}, peer="nscpeer", alias=naming.link_alias())
    said, kept = reap_forged(tmp_path, intent)
    assert f"left alone: link {name}" in said and "is not the one recorded" in said, said
    assert socket.if_nametoindex(name) == index
    said, kept = reap_forged(tmp_path, made("link", name, {"ifindex": index}, peer="nscpeer"), 1)
    assert f"left alone: link {name}" in said and "records no ifalias" in said, said
    assert socket.if_nametoindex(name) == index and kept


# -- SysV objects and message queues ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["shm", "sem", "msg"])
def test_a_sysv_object_with_a_reused_key_and_id_is_left_and_said(tmp_path: Path, kind: str) -> None:
    """1. the journal records the user's object's key, id and creator, and an earlier creation time
    2. reap; 3. EXPECT the user's object in place, the reaper saying why"""
    key = naming.ipc_key() | 0x80000000  # a key printed negative by /proc/sysvipc: read back unsigned
    ident = probe.ipc_create(kind, key)
    try:
        assert [key, ident] in probe.sysvipc()[kind]  # what the audit lists, its key unsigned
        found = objects.sysv_identity(kind, key, ident)
        forged = {**found, "ctime": found["ctime"] - 3600}
        said, _ = reap_forged(tmp_path, made("sysv", f"{kind} {key:#x}", forged, ipc=kind, key=key))
        assert f"left alone: sysv {kind} {key:#x}" in said and "is not the one recorded" in said, said
        assert probe.ipc_lookup(kind, key) == ident
        if kind != "shm":  # version 1 recorded id and creator pid, which the kernel shows for shm only
            old = {"id": ident, "cpid": None}
            said, kept = reap_forged(tmp_path, made("sysv", f"{kind} {key:#x}", old, ipc=kind, key=key), 1)
            assert "left alone" in said and kept, said
            assert probe.ipc_lookup(kind, key) == ident
    finally:
        probe.ipc_remove(kind, ident)


def test_a_message_queue_of_the_same_name_is_left_and_said(tmp_path: Path) -> None:
    """1. the journal records the name of the user's message queue and another inode (or, version 1, none)
    2. reap; 3. EXPECT the user's queue in place, the reaper saying why"""
    name = f"/users-{os.getpid()}-{naming.unique('mq')}"
    probe.mq_create(name)
    try:
        inode = identity.mqueue_inode(name)
        said, _ = reap_forged(tmp_path, made("mqueue", name, {"ino": inode + 1}))
        assert f"left alone: mqueue {name}" in said and "is not the one recorded" in said, said
        assert probe.mq_exists(name)
        said, kept = reap_forged(tmp_path, made("mqueue", name, {}), 1)
        assert f"left alone: mqueue {name}" in said and "records no ino" in said, said
        assert probe.mq_exists(name) and kept
    finally:
        probe.mq_remove(name)


# -- processes and containers ---------------------------------------------------------------------


def test_a_process_with_a_reused_pid_is_left_and_said(tmp_path: Path) -> None:
    """1. the journal records the user's process's pid, and the start time of an earlier process of that pid
    2. reap; 3. EXPECT the user's process alive, the reaper saying why"""
    user = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import signal; signal.pause()"])
    try:
        start = journal.process_start(user.pid)
        assert start is not None
        said, _ = reap_forged(tmp_path, made("process", "", {"pid": user.pid, "start": start - 1}))
        assert "left alone: process" in said and f"process {user.pid} is not the one recorded" in said, said
        assert user.poll() is None
    finally:
        user.send_signal(signal.SIGKILL)
        user.wait()


def test_a_container_not_of_the_journal_is_left_and_said(tmp_path: Path) -> None:
    """A container id without the journal's token: its cleanup command is never run."""
    marker = tmp_path / "cleanup-ran"
    said, kept = reap_forged(tmp_path, made("container", "users-container", None, cleanup=["touch", str(marker)]))
    assert "left alone: container users-container" in said and "does not bear its journal's token" in said, said
    assert not marker.exists() and kept


def test_forged_journals_cover_every_kind() -> None:
    """A kind added to the journal needs a forged-identity test here."""
    covered = {"path", "mount", "link", "sysv", "mqueue", "process", "container"}
    assert set(journal.KINDS) == covered


def test_a_journal_with_an_identity_no_nsconform_writes_is_reported(tmp_path: Path) -> None:
    """A SysV entry without its kind and key: reported as unreadable, the journal kept, the session goes on."""
    said, kept = reap_forged(tmp_path, made("sysv", "shm 0x1", {"id": 1}))
    assert "left alone: sysv shm 0x1: its recorded identity is unreadable" in said and kept, said
