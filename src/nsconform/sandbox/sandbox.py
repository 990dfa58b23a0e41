"""A running sandbox: the runtime's process, the probe inside it, and the protocol between them.

Everything the probe sends is data: parsed as JSON, one line at a time, each line at most
MAX_LINE bytes, each answer within the probe timeout. Anything else kills the sandbox and
raises SandboxError, which the report records as `error`, never as a verdict.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import psutil

from nsconform.guarantees import skip_nothing
from nsconform.hygiene import journal
from nsconform.inside import payload
from nsconform.inside.probe import kernel
from nsconform.namespaces import ALL as ALL_NAMESPACES
from nsconform.sandbox.errors import ProbeTimeout, SandboxError

MAX_LINE = 1 << 20


@dataclass
class Launch:
    """What a runtime hands over to start one sandbox."""

    argv: list[str]
    code: str
    claimed: frozenset[str]
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    # the namespaces are a running process's, joined (--nsc-attach): closing ends only the harness's own processes
    joined: bool = False
    # forks the runtime's process given its stdin, stdout and stderr fds, instead of running argv (forkserver.py)
    spawn: Callable[[int, int, int], Any] | None = None
    # an argument of its processes' command lines that names them exactly (the probe's tag), for the journal
    name: str = ""


class Sandbox:
    """One sandbox with its probe; `probe(op, **args)` asks it something."""

    def __init__(self, launch: Launch, timeout: float) -> None:
        self.claimed = launch.claimed
        self.timeout = timeout
        self._launch = launch
        self._buffer = b""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._closed = False
        self._inside: list[psutil.Process] = []  # the probe, once found: a runtime may not be its ancestor
        self._pid_ns: int | None = None  # an fd holding the probe's PID namespace, so that its inode is not reused
        self._ns: dict[str, tuple[int, int]] = {}  # the probe's namespaces, read by the host once it is found
        self._at_close: list[Callable[[], None]] = []  # what others attached to the sandbox (a veth pair ...)
        self._journal = journal.current()
        self._entry = self._journal.record("process", launch.name)
        try:
            self.process = self._start(launch)
            self._journal.made_process(self._entry, self.process.pid)
        except (OSError, SandboxError) as e:
            self._closed = True
            self._stderr.close()
            self._journal.removed(self._entry)
            for step in reversed(launch.cleanup):
                step()
            why = e.strerror if isinstance(e, OSError) else str(e)
            raise SandboxError(f"cannot start the runtime {launch.argv[0]!r}: {why}") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._in, False)
        try:
            deadline = time.monotonic() + timeout
            if launch.spawn is None:  # a forked launcher has its code already
                self._write(payload(launch.code), deadline)
            message = self._read(deadline)
            self.hello: dict[str, Any] = self._check_hello(message)
            self.host_kernel = host_kernel()
            self.own_kernel = other_kernel(self.hello.get("kernel"), self.host_kernel)
            # The probe's host process, its namespaces as the host sees them; none where the sandbox runs a kernel
            # of its own (gVisor, a VM), whose processes are not host processes.
            self.pid: int | None = None
            if self.own_kernel is None:
                self.pid = self._host_pid()
                self._ns = self._namespaces()
                self._hold_pid_namespace()
        except BaseException:
            self.close()
            raise

    def _start(self, launch: Launch) -> Any:
        """The runtime's process: a new one running launch.argv, or the one launch.spawn forks (a Forked of
        nsconform.sandbox.forkserver), with pipes for its stdin and stdout either way."""
        if launch.spawn is None:
            return subprocess.Popen(
                launch.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,
                cwd="/",
            )
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            process = launch.spawn(stdin_r, stdout_w, self._stderr.fileno())
        except BaseException:
            os.close(stdin_w)
            os.close(stdout_r)
            raise
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        process.stdin, process.stdout = open(stdin_w, "wb"), open(stdout_r, "rb")  # noqa: SIM115 (closed in close())
        return process

    # -- asking ----------------------------------------------------------------------------

    def probe(self, op: str, **args: Any) -> Any:
        """Run `op` inside; returns its result, raises OSError with the probe's errno if it failed there."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        deadline = time.monotonic() + self.timeout
        self._write(json.dumps({"op": op, "args": args}).encode() + b"\n", deadline)
        return result_of(op, self._read(deadline))

    def channel(self) -> set[tuple[int, int]]:
        """(device, inode) of the harness's ends of the probe's stdin, stdout and stderr: the probe's fds on the
        same pipes and file are the harness's channel to it, not what the sandbox inherited."""
        return {inode(os.fstat(fd)) for fd in (self._in, self._out, self._stderr.fileno())}

    def ns_inode(self, ns: str) -> tuple[int, int] | None:
        """(device, inode) of the probe's namespace `ns`, read by the host (None: no such kernel feature)."""
        return self._ns.get(ns)

    def _namespaces(self) -> dict[str, tuple[int, int]]:
        """The probe's namespaces as the host sees its process; they must be what the probe reported."""
        found = {}
        for ns in ALL_NAMESPACES:
            try:
                found[ns] = inode(os.stat(f"/proc/{self.pid}/ns/{ns}"))
            except FileNotFoundError:
                if os.path.exists(f"/proc/{self.pid}"):
                    continue  # a namespace type this kernel does not have
                raise self._fail("the probe's process vanished") from None
            reported = self.hello["ns"].get(ns)
            if reported is not None and tuple(reported) != found[ns]:
                raise self._fail(f"the probe reported another {ns} namespace ({reported}) than its process is in")
        return found

    @property
    def joined(self) -> bool:
        """Whether the namespaces are a running process's, joined (--nsc-attach)."""
        return self._launch.joined

    @property
    def alive(self) -> bool:
        return not self._closed and self.process.poll() is None

    def ns_members(self, ns: str = "pid") -> list[psutil.Process]:
        """Every host process in the probe's `ns` namespace (with PID isolated and ns "pid": the whole sandbox)."""
        own = self.ns_inode(ns)
        members = []
        for proc in psutil.process_iter():
            try:
                st = os.stat(f"/proc/{proc.pid}/ns/{ns}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == own:
                members.append(proc)
        return members

    # -- ending ----------------------------------------------------------------------------

    def end(self) -> int | None:
        """Ask the probe to exit and wait for the runtime to finish, killing nothing.

        Returns the runtime's exit status, or None if it is still running after the timeout.
        """
        self._ask_exit()
        return self._wait(self.timeout)

    def close(self) -> None:
        """End the probe and everything in the sandbox, whatever state it is in."""
        if self._closed:
            return
        self._closed = True
        leftovers = self._processes()
        self._ask_exit()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._wait(min(self.timeout, 2.0))
        self._kill([self.process, *leftovers])
        self._journal.removed(self._entry)
        if self._pid_ns is not None:
            os.close(self._pid_ns)
        try:
            for step in reversed(self._at_close):
                step()
        finally:
            for step in reversed(self._launch.cleanup):
                step()
            self._stderr.close()

    def at_close(self, step: Callable[[], None]) -> None:
        """Have `step` run when the sandbox closes, once its processes are gone (so its namespaces, unless held)."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        self._at_close.append(step)

    def _processes(self) -> list[psutil.Process]:
        """The runtime's process tree, the probe's (a runtime may hand it to a monitor, as podman does to
        conmon), and every process of the probe's PID namespace when that is not the harness's."""
        roots = []
        if self.process.poll() is None:  # not reaped yet, so the pid is still the runtime's
            with contextlib.suppress(psutil.Error):
                roots.append(psutil.Process(self.process.pid))
        found: list[psutil.Process] = []
        for root in [*roots, *self._inside]:
            if root not in found:  # the probe is the runtime's descendant, unless a monitor adopted it
                with contextlib.suppress(psutil.Error):
                    found += [root, *root.children(recursive=True)]
        own_namespace = self.ns_inode("pid") != inode(os.stat("/proc/self/ns/pid"))
        if self._pid_ns is not None and own_namespace and not self._launch.joined:
            found += self.ns_members()  # held open by self._pid_ns: no other sandbox's namespace
        return found

    def _wait(self, timeout: float) -> int | None:
        """The runtime's exit status once it exits within `timeout`, else None (a pidfd: no polling)."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):  # a pidfd cannot be had only when the process is gone
                fd = os.pidfd_open(self.process.pid)
                try:
                    select.select([fd], [], [], timeout)
                finally:
                    os.close(fd)
        return self.process.poll()

    def _ask_exit(self) -> None:
        with contextlib.suppress(OSError):  # gone already, or not reading: the kill that follows settles it
            os.write(self._in, b'{"op": "exit"}\n')

    def _kill(self, processes: list[Any]) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for proc in processes:
            with contextlib.suppress(OSError, psutil.Error):
                proc.kill()
        self.process.wait()
        await_exit(processes, self.timeout)  # those outside the runtime's tree are reaped by others

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- wire ------------------------------------------------------------------------------

    def _fail(self, why: str, kind: type[SandboxError] = SandboxError) -> SandboxError:
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - 1500))
        tail = self._stderr.read().decode(errors="replace").strip()
        self.close()
        status = self.process.returncode
        return kind(f"{why} (runtime exit status {status}){': ' + tail if tail else ''}")

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._in], [], remaining)[1]:
                raise self._fail(f"the probe did not read its input within {self.timeout:g} s", ProbeTimeout)
            try:
                view = view[os.write(self._in, view) :]
            except BrokenPipeError:
                raise self._fail("the sandbox closed its input before the probe read it") from None

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise self._fail(f"the probe sent a line longer than {MAX_LINE} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
                raise self._fail(f"the probe did not answer within {self.timeout:g} s", ProbeTimeout)
            chunk = os.read(self._out, 65536)
            if not chunk:
                raise self._fail("the sandbox exited without answering")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if len(line) > MAX_LINE:
            raise self._fail(f"the probe sent a line longer than {MAX_LINE} bytes")
        try:
            message = json.loads(line)
        except ValueError:
            raise self._fail(f"the probe sent something that is not JSON: {line[:200]!r}") from None
        if not isinstance(message, dict):
            raise self._fail(f"the probe sent JSON that is not an object: {line[:200]!r}")
        return message

    def _check_hello(self, message: dict[str, Any]) -> dict[str, Any]:
        """The hello must say who the probe is and where: a verdict must never rest on a missing value."""
        hello = message.get("hello")
        ns = hello.get("ns") if isinstance(hello, dict) else None
        ident = hello.get("identity") if isinstance(hello, dict) else None
        well_formed = (
            isinstance(ns, dict)
            and all(isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v) for v in ns.values())
            and isinstance(ident, dict)
            and all(type(ident.get(k)) is int for k in ("pid", "ppid", "uid", "gid"))
        )
        if not well_formed:
            raise self._fail(f"the probe's first message is not a complete hello: {shorten(message)}")
        return hello  # type: ignore[return-value]

    def _host_pid(self) -> int:
        """The probe's pid on the host: from the launcher, or found by its namespace and inner pid."""
        known = self.hello.get("host_pid")
        if isinstance(known, int):
            return known
        inner = self.hello["identity"]["pid"]
        reported = self.hello["ns"].get("pid")  # what the probe says; _namespaces() then verifies it
        pid_ns = tuple(reported) if reported else None
        candidates = [self.process.pid]
        with contextlib.suppress(psutil.Error):
            candidates += [p.pid for p in psutil.Process(self.process.pid).children(recursive=True)]
        for pid in [*candidates, *psutil.pids()]:
            if pid_in_namespace(pid) == (pid_ns, inner):
                return pid
        raise self._fail("cannot find the probe's process on the host")

    def _hold_pid_namespace(self) -> None:
        try:
            self._inside = [psutil.Process(self.pid)]
            self._pid_ns = os.open(f"/proc/{self.pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            held = inode(os.fstat(self._pid_ns))
        except (OSError, psutil.Error):
            raise self._fail("the probe's process ended while the harness looked at it") from None
        if held != self.ns_inode("pid") or not self._inside[0].is_running():
            raise self._fail("the probe's process ended while the harness looked at it")

    def namespace_init(self) -> psutil.Process | None:
        """PID 1 of the probe's PID namespace, if the probe or one of its ancestors is that init (or, in a
        joined sandbox, any member of the namespace: the target's own init); None without a host process."""
        if self.pid is None:
            return None
        own = self.ns_inode("pid")
        with contextlib.suppress(psutil.Error):
            probe = psutil.Process(self.pid)
            joined = self.ns_members() if self._launch.joined else []
            for proc in [probe, *probe.parents(), *joined]:
                if pid_in_namespace(proc.pid) == (own, 1):
                    return proc
        return None


def result_of(op: str, answer: dict[str, Any]) -> Any:
    """The result of the probe's `answer` to `op`; its errno as OSError, but ENOSYS (a seccomp filter, or a kernel
    of the sandbox's own, stopped the call) as a skip: the check has nothing to examine. Anything else that is no
    answer: SandboxError."""
    if answer.get("ok") is True:
        return answer.get("result")
    if answer.get("ok") is False and isinstance(answer.get("errno"), int):
        if answer["errno"] == errno.ENOSYS:
            skip_nothing(f"the sandbox does not implement {op} (ENOSYS: a seccomp filter, or a kernel of its own)")
        raise OSError(answer["errno"], str(answer.get("error", ""))[:500])
    raise SandboxError(f"the probe could not run {op}: {shorten(answer)}")


@cache
def host_kernel() -> dict[str, Any]:
    """The host kernel's answer to the probe's `kernel` observation."""
    return kernel()


def other_kernel(seen: Any, host: dict[str, Any]) -> dict[str, Any] | None:
    """`seen` (a hello's `kernel`) when another kernel than the host's answers inside: another release or
    version string, which no namespace changes. None where it is the host's (or the probe did not say).
    The boot id is evidence only: a runtime may bind a boot id of its own over /proc's (LXC does)."""
    if not isinstance(seen, dict):
        return None
    different = (seen.get("release"), seen.get("version")) != (host.get("release"), host.get("version"))
    return seen if different else None


def await_exit(processes: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait on pidfds until every one of `processes` has exited, or `timeout` passed; returns those still running."""
    waiting: dict[int, psutil.Process] = {}
    try:
        for proc in processes:
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(proc.pid)
                if proc.is_running():  # the pidfd is this process's, not a later one's with the same pid
                    waiting[fd] = proc
                else:
                    os.close(fd)
        deadline = time.monotonic() + timeout
        while waiting and (remaining := deadline - time.monotonic()) > 0:
            for fd in select.select(list(waiting), [], [], remaining)[0]:
                os.close(fd)
                del waiting[fd]
        return list(waiting.values())
    finally:
        for fd in waiting:
            os.close(fd)


def inode(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def pid_in_namespace(pid: int) -> tuple[tuple[int, int], int] | None:
    """(PID namespace as (device, inode), pid inside it) of host process `pid`; None once it is gone."""
    try:
        namespace = inode(os.stat(f"/proc/{pid}/ns/pid"))
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
    return (namespace, int(nspid[-1])) if nspid else None


def shorten(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
