"""A journal of every host object a harness process makes, so that only what a run made is ever removed.

One journal file per harness process (the controller, each xdist worker, any helper that makes host
objects) and run (a pytest session run in-process inside another has one of its own),
in a directory only its user may enter (`/run/nsconform` as root; rootless, `$XDG_RUNTIME_DIR/nsconform`,
`~/.local/state/nsconform`, or where the HOME is not the user's, `$TMPDIR/nsconform-UID`; 0700). The
process holds an exclusive flock on its journal for its whole life: a journal whose lock is free
belongs to a process that is gone. The file appears under its name only once locked (made with
O_TMPFILE, then linked), and is unlinked, still locked, when its process ends with nothing left to remove.

Entries are two-phase, one JSON line each:
- `intent`: the kind and exact name of an object, written before the object is made (and fsync'd
  where the object would outlive a crash of the machine: files on disk, containers);
- `made`: the object's identity once it exists, one a later object of the same name or number cannot have
  (nsconform.hygiene.identity: device, inode, birth time and generation of a path; key, id, creator and
  creation time of a SysV object; ifindex of a link, whose intent names the ifalias the harness gives it;
  unique id of a mount; inode of a message queue; start time of a process);
- `removed`: the harness removed it (or found it gone).

Names carry the process's token (nsconform.hygiene.naming), so that no two processes ever make objects
of the same name; a name is never proof of whose an object is: an object whose identity was never
recorded (a crash between the intent and `made`) is reported by the reaper, not removed. Journals of
version 1 (an earlier nsconform, which recorded reusable identities only) are read, and what they list
is removed only where their identity is proof (a process's start time). The journal needs no pytest:
any program (the kernel audit's VMs) may `record` what it makes.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import secrets
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nsconform.hygiene import identity

VERSION = 2  # 1: identities without birth times, unique mount ids, ifaliases or SysV creation times
READABLE = (1, VERSION)
KINDS = ("process", "container", "mount", "link", "sysv", "mqueue", "path")
DURABLE = frozenset({"path", "container"})  # what outlives a crash of the machine: their intents are fsync'd
ROOT_DIRECTORY = Path("/run/nsconform")
T = TypeVar("T")
_token = secrets.token_hex(4)


def token() -> str:
    """This process's token, in every name it gives and in the header of each of its journals."""
    return _token


def _forked() -> None:
    """A child forked without exec is a process of its own: a token and journals of its own (its parent's
    journal files and locks stay the parent's)."""
    global _token
    _token = secrets.token_hex(4)
    OPEN.clear()
    _default.clear()


os.register_at_fork(after_in_child=_forked)


class JournalError(RuntimeError):
    """The journal directory or a journal file cannot be used as it is."""


def directory() -> Path:
    """This user's journal directory, made 0700 if missing (and made private if it is the user's own but open
    to others, as a mount point made for another purpose may be); refused if it is not the user's own."""
    path = ROOT_DIRECTORY if os.geteuid() == 0 else user_directory()
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.geteuid():
        raise JournalError(f"{path}: the journal directory must be a directory of uid {os.geteuid()}, not a link")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


def user_directory() -> Path:
    """An unprivileged user's journal directory: `$XDG_RUNTIME_DIR/nsconform`, else
    `$XDG_STATE_HOME/nsconform` (`~/.local/state/nsconform`) where the user may make it, else (a HOME that is
    not the user's: `setpriv --reuid` keeps root's) `nsconform-UID` in the temporary directory."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"], "nsconform")
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state", "nsconform")
    if may_make(state):
        return state
    return Path(tempfile.gettempdir(), f"nsconform-{os.geteuid()}")


def may_make(path: Path) -> bool:
    """Whether this user may make `path` (or has it): its nearest existing ancestor is writable and searchable."""
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))  # False where it may not look
    return os.access(existing, os.W_OK | os.X_OK)


def read_starttime(pid: int) -> int:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def process_start(pid: int) -> int | None:
    """The start time of process `pid`, verified with a pidfd to be that process's (None: it is gone)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        start = read_starttime(pid)
        signal.pidfd_send_signal(fd, 0)  # not yet reaped, so the pid was still its when /proc was read
        return start
    except OSError:
        return None
    finally:
        os.close(fd)


@dataclass
class Entry:
    """One object of a journal: intent (kind, name, details), identity once made, removal."""

    seq: int
    kind: str
    name: str
    details: dict[str, Any] = field(default_factory=dict)  # known before it is made (a mount's source ...)
    identity: dict[str, Any] | None = None
    removed: bool = False
    book: Journal | None = field(default=None, repr=False, compare=False)  # the journal that recorded it


class Journal:
    """This process's journal of one run: `record` an object before making it, then `made` and `removed`."""

    def __init__(self, run: str, role: str) -> None:
        self.run = run
        self.role = role
        self.token = token()
        self.entries: list[Entry] = []
        self.fd: int | None = None  # the file, made on the first entry: a process that makes nothing writes nothing
        self.path: Path | None = None
        self.serial = 0
        self.pid = os.getpid()
        self.closed = False

    def header(self) -> dict[str, Any]:
        pid = os.getpid()
        return {"journal": VERSION, "run": self.run, "role": self.role, "token": self.token, "pid": pid,
                "start": read_starttime(pid), "uid": os.geteuid()}  # fmt: skip

    def _open(self) -> int:
        """The journal file, locked before it has a name: no one ever sees it unlocked while its process lives."""
        if self.fd is None:
            where = directory()
            fd = os.open(where, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
            dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line(self.header()))
                os.fsync(fd)
                name = f"{os.getpid()}-{self.token}-{self.run}.journal"
                # linkat(AT_SYMLINK_FOLLOW), which os.link uses where a directory fd is given
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
                os.fsync(dir_fd)
            except BaseException:
                os.close(fd)
                raise
            finally:
                os.close(dir_fd)
            path = where / name
            self.fd, self.path = fd, path
            atexit.register(self.close)
        return self.fd

    def _write(self, record: dict[str, Any], durable: bool = False) -> None:
        if self.closed:
            return  # a finalizer at the interpreter's exit, after close(): the reaper finds what is gone
        fd = self._open()
        os.write(fd, line(record))  # one write a line, O_APPEND not needed: only this process writes
        if durable:
            os.fsync(fd)

    def record(self, kind: str, name: str, *, durable: bool | None = None, **details: Any) -> Entry:
        """The intent to make object `name` of `kind`, on file before the object exists; fsync'd when `durable`
        (by default for the kinds that outlive a crash of the machine; a file in a memory filesystem does not)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind of host object {kind!r}")
        self.serial += 1
        entry = Entry(self.serial, kind, name, details, book=self)
        sync = kind in DURABLE if durable is None else durable
        self._write({"seq": entry.seq, "op": "intent", "kind": kind, "name": name, **details}, sync)
        self.entries.append(entry)
        return entry

    def made(self, entry: Entry, **identity: Any) -> None:
        """`entry`'s object exists, and this is how to tell it from any later object of the same name.

        Written to the journal that recorded the entry, whichever journal is current now (a nested session
        may have begun or ended since), as is its removal."""
        entry.identity = identity
        (entry.book or self)._write({"seq": entry.seq, "op": "made", **identity})

    def removed(self, entry: Entry) -> None:
        """`entry`'s object is gone: removed by the harness, or found gone (a veth with its namespace)."""
        if not entry.removed:
            entry.removed = True
            (entry.book or self)._write({"seq": entry.seq, "op": "removed"})

    @contextlib.contextmanager
    def holding(self, kind: str, name: str, *, durable: bool | None = None, **details: Any) -> Iterator[Entry]:
        """Record the intent for the block that makes the object; an error in it means nothing was made."""
        entry = self.record(kind, name, durable=durable, **details)
        try:
            yield entry
        except BaseException:
            self.removed(entry)
            raise

    @contextlib.contextmanager
    def for_block(
        self,
        kind: str,
        name: str,
        make: Callable[[], T],
        remove: Callable[[T], object],
        identity: Callable[[T], dict[str, Any]],
        *,
        durable: bool | None = None,
        **details: Any,
    ) -> Iterator[T]:
        """The object `make()` returns, for the block, journaled throughout; `remove(it)` after the block."""
        with self.holding(kind, name, durable=durable, **details) as entry:
            made = make()
        self.made(entry, **identity(made))
        try:
            yield made
        finally:
            remove(made)
            self.removed(entry)

    def made_path(self, entry: Entry) -> None:
        """The path `entry` names exists now: its device, inode, birth time and generation are its identity."""
        self.made(entry, **identity.path_identity(entry.name))

    def made_process(self, entry: Entry, pid: int) -> None:
        """Process `pid` is `entry`'s: its start time, read while a pidfd held it, tells it from a later one."""
        self.made(entry, pid=pid, start=process_start(pid))

    def live(self, kind: str) -> list[Entry]:
        """This journal's objects of `kind` not yet removed."""
        return [e for e in self.entries if e.kind == kind and not e.removed]

    def close(self) -> None:
        """End the journal: its file is unlinked (still locked) if it lists nothing left, else kept for the reaper."""
        self.closed = True
        if self.fd is None or self.pid != os.getpid():
            return  # nothing on file, or a forked child's copy: the journal is its parent's
        if self.path is not None and all(e.removed for e in self.entries):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None
        atexit.unregister(self.close)


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def new_run() -> str:
    """A new run id: the controller's, handed to its workers; every name the run gives carries it."""
    return secrets.token_hex(4)


# -- the journals of this process: the innermost session's, else one of the process's own ------

OPEN: list[Journal] = []
_default: list[Journal] = []


def begin(run: str, role: str) -> Journal:
    """Start this process's journal of run `run` (a pytest session in this process, nested sessions included)."""
    made = Journal(run, role)
    OPEN.append(made)
    return made


def end(ended: Journal) -> None:
    OPEN.remove(ended)
    ended.close()


def current() -> Journal:
    """Where this process records what it makes now: the innermost session's journal, else a run of its own."""
    if OPEN:
        return OPEN[-1]
    if not _default:
        _default.append(Journal(new_run(), "process"))
    return _default[0]


# -- reading journals -------------------------------------------------------------------------


@dataclass
class Written:
    """A journal as read from its file: the header and each object's entry."""

    path: Path
    header: dict[str, Any]
    entries: list[Entry]

    @property
    def left(self) -> list[Entry]:
        return [e for e in self.entries if not e.removed]


class CorruptJournal(JournalError):
    pass


def parse(path: Path, data: bytes) -> Written:
    """A journal's content; CorruptJournal if any line is not what a journal writes.

    A last line without its newline is a record its process died writing: never acted upon (the object of an
    intent is made only once the intent is written), so it is left out."""
    lines = data.split(b"\n")
    lines[-1] = b""
    if len(lines) < 2:
        raise CorruptJournal(f"{path}: no header")
    try:
        header = json.loads(lines[0])
        if header.get("journal") not in READABLE or not all(
            k in header for k in ("run", "token", "pid", "start", "uid")
        ):
            raise CorruptJournal(f"{path}: no journal header")
        entries: dict[int, Entry] = {}
        for raw in lines[1:-1]:
            rec = json.loads(raw)
            seq, op = rec.pop("seq"), rec.pop("op")
            if op == "intent":
                kind, name = rec.pop("kind"), rec.pop("name")
                if kind not in KINDS or not isinstance(name, str) or seq in entries:
                    raise CorruptJournal(f"{path}: bad intent {raw[:200]!r}")
                entries[seq] = Entry(seq, kind, name, rec)
            elif op == "made":
                entries[seq].identity = rec
            elif op == "removed":
                entries[seq].removed = True
            else:
                raise CorruptJournal(f"{path}: unknown entry {raw[:200]!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptJournal(f"{path}: unreadable entry ({type(e).__name__}: {e})") from None
    return Written(path, header, list(entries.values()))


def files() -> list[Path]:
    try:
        return sorted(p for p in directory().iterdir() if p.is_file() and not p.is_symlink())
    except OSError:
        return []


def of_run(run: str) -> tuple[list[Written], list[str]]:
    """The journals of run `run` on file (their processes live or not), and what could not be read."""
    found, problems = [], []
    for path in files():
        try:
            written = parse(path, path.read_bytes())
        except FileNotFoundError:
            continue  # its process ended cleanly meanwhile
        except (OSError, JournalError) as e:
            problems.append(str(e))
            continue
        if written.header["run"] == run:
            found.append(written)
    return found, problems


@contextlib.contextmanager
def abandoned(path: Path, *, wait: bool = False) -> Iterator[Written | None]:
    """Journal `path` if its process is gone (its lock taken here for the block), else None; with `wait`, after
    its process (or another run's reaper of it) has let go of it.

    Raises CorruptJournal (or OSError) for a journal that cannot be read: it is reported and left alone.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno != errno.EWOULDBLOCK:
                raise
            yield None  # its process lives
            return
        if os.fstat(fd).st_nlink == 0:
            yield None  # ended cleanly, or reaped by another run, while we waited for the lock
            return
        with open(fd, "rb", closefd=False) as f:
            yield parse(path, f.read())
    finally:
        os.close(fd)
