"""A fork server for native sandboxes: one clean interpreter per session forks each sandbox's launcher.

Starting a Python interpreter is most of what a native sandbox costs (~7 ms of CPU, and as long
to wait). The fork server is started like a probe (/usr/bin/python3 -I -S, its code over stdin,
so it needs no file of the checkout), loads the probe and the launcher once, and forks a child
per sandbox that runs nsconform/inside/launcher.py's `launch` exactly as a freshly started interpreter
would. It is single-threaded and holds nothing of the harness, so forking it is safe.

It lives for the session (`serving()`, entered by the plugin) and dies with the process that
started it (PR_SET_PDEATHSIG), and each child dies with it. Outside a session, or for any other
runtime, sandboxes start their own interpreter as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from typing import IO, Any

from nsconform.hygiene import journal, naming
from nsconform.inside import code, payload, probe_command
from nsconform.sandbox.sandbox import SandboxError

SERVING: list[ForkServer] = []  # the servers of the sessions in progress in this process, innermost last


@cache
def server_code() -> str:
    return code("probe", "launcher", main="fork_server(int(sys.argv[2]))")


class ForkServer:
    """The harness's end of one fork server, started on first use."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.control: socket.socket | None = None
        self.stderr: IO[bytes] | None = None
        self.generation = 0  # how many times it was started: a broken server is started afresh
        self.ended = False
        self.record = journal.current()  # the server is a process of the harness's, journaled
        self.entry: journal.Entry | None = None

    def start(self) -> socket.socket:
        if self.control is not None:
            return self.control
        if self.ended:
            raise SandboxError("the fork server has ended")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        tag = naming.unique("forkserver")
        entry = self.entry = self.record.record("process", tag)
        try:
            self.process = subprocess.Popen(
                [*probe_command(tag), str(theirs.fileno())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self.stderr,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd="/",
            )
        except OSError as e:
            self.record.removed(entry)
            raise SandboxError(f"cannot start the fork server: {e.strerror}") from None
        finally:
            theirs.close()
        self.record.made_process(entry, self.process.pid)
        assert self.process.stdin is not None
        with self.process.stdin as code:
            code.write(payload(server_code()))
        ours.settimeout(self.timeout)
        self.control = ours
        self.generation += 1
        return ours

    def ask(self, request: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        control = self.start()
        try:
            socket.send_fds(control, [json.dumps(request).encode()], fds or [])
            answer = control.recv(1 << 16)
        except OSError as e:
            raise self._broken(f"the fork server did not answer: {e}") from None
        if not answer:
            raise self._broken("the fork server ended")
        return json.loads(answer)

    def spawn(self, config: dict[str, Any], stdin: int, stdout: int, stderr: int) -> Forked:
        """Fork a launcher of `config` with these three fds as its stdin, stdout and stderr."""
        pid = self.ask({"config": config}, [stdin, stdout, stderr])["pid"]
        return Forked(self, pid)

    def reap(self, pid: int, generation: int) -> int:
        """The wait status of child `pid` of the server's `generation`, which must still be the one running."""
        if self.control is None or generation != self.generation:
            raise SandboxError("the fork server that forked it has ended")  # its children were reaped elsewhere
        status = self.ask({"reap": pid})["status"]
        if status is None:
            raise SandboxError(f"the fork server has no child {pid}")
        return int(status)

    def _broken(self, why: str) -> SandboxError:
        tail = ""
        if self.stderr is not None:
            self.stderr.seek(0)
            tail = self.stderr.read()[-1500:].decode(errors="replace").strip()
        self._stop()
        return SandboxError(why + (f": {tail}" if tail else ""))

    def close(self) -> None:
        """End the server (its children with it) and wait for it; it starts no more."""
        self.ended = True
        self._stop()

    def _stop(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.process is not None:
            try:
                self.process.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.entry is not None:
            self.record.removed(self.entry)
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


class Forked:
    """A launcher the fork server forked, as the Sandbox sees a runtime's process: pid, poll(), wait().

    Its pidfd is opened at once: the child stays the server's zombie until reaped on the harness's
    word, so the pid cannot be another process's before then.
    """

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.generation = server.generation
        self.returncode: int | None = None
        self.pidfd = os.pidfd_open(pid)
        self.stdin: IO[bytes] | None = None  # the Sandbox's ends of the pipes it gave
        self.stdout: IO[bytes] | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self.pidfd], [], [], 0)[0]:
            self._reap()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self.pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"launcher {self.pid}", timeout or 0)
            self._reap()
        assert self.returncode is not None
        return self.returncode

    def is_running(self) -> bool:
        return self.poll() is None

    def kill(self) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def _reap(self) -> None:
        try:
            self.returncode = os.waitstatus_to_exitcode(self.server.reap(self.pid, self.generation))
        except SandboxError:  # the server is gone, and its children were killed with it (PR_SET_PDEATHSIG)
            self.returncode = -signal.SIGKILL
        finally:
            os.close(self.pidfd)


@contextlib.contextmanager
def serving(timeout: float) -> Iterator[ForkServer]:
    """Native sandboxes started in the block come from one fork server, ended with the block."""
    server = ForkServer(timeout)
    SERVING.append(server)
    try:
        yield server
    finally:
        SERVING.remove(server)
        server.close()


def current() -> ForkServer | None:
    return SERVING[-1] if SERVING else None
