"""One run of a command for one kernel: its output into a log, a progress line, a wall-clock limit, and
nothing of it left once it has ended.

A VM's run (virtme-ng and the QEMU it starts) goes in a PID namespace of its own (`unshare --pid --fork
--kill-child`): killing the namespace's first process kills every other one in it, and unshare(1) ends
only once all of them have; unshare(1) itself is killed should this process die (setpriv --pdeathsig).
The host's run is the suite itself, which must see the host's own PID namespace: it runs in a process
group of its own, which gets SIGINT at the limit (pytest stops and cleans up) and SIGKILL when that takes
longer than GRACE_S.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import psutil

GRACE_S = 30.0
BOOTED = "nsconform-kernel: booted"  # the first line a VM's command prints (kernels.vm)
RUNNING = "nsconform-kernel: running"  # before each runtime's suite where a VM runs several
# A command in a PID namespace of its own that dies with its first process, which dies with this process (a
# killed audit leaves no VM or build running).
PIDNS = ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--pid", "--fork", "--kill-child", "--"]
COUNT = re.compile(rb"\[\s*(\d+)/(\d+)\]\s*$")  # pytest's console_output_style=count


@dataclass(frozen=True)
class Ended:
    status: int  # the exit status; negative: killed by that signal
    stopped: str | None  # "boot": at the boot limit, before the BOOTED line; "limit": at the wall-clock limit
    tail: list[str]  # the output's last lines


class Progress:
    """One line per kernel on stderr: its phases always, and on a terminal the count of results as they come
    (the line is rewritten in place)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.open = False  # a rewritable line is on the terminal

    def say(self, text: str) -> None:
        if self.open:
            self.stream.write("\n")
            self.open = False
        self.stream.write(f"nsconform: [{self.label}] {text}\n")
        self.stream.flush()

    def count(self, done: int, total: int) -> None:
        if self.tty:
            self.stream.write(f"\rnsconform: [{self.label}] running: {done}/{total} results")
            self.stream.flush()
            self.open = True


def run(
    argv: list[str],
    log: Path,
    limit_s: float,
    progress: Progress | None,
    *,
    env: dict[str, str] | None = None,
    pidns: bool = False,
    boot_limit_s: float | None = None,
) -> Ended:
    """Run argv with its output (stdout and stderr) into `log`, reporting progress; stop it at `limit_s`, or
    at `boot_limit_s` when it has not printed the BOOTED line by then."""
    if pidns:
        argv = [*PIDNS, *argv]
    tail: deque[str] = deque(maxlen=20)
    started = time.monotonic()
    deadline = started + limit_s
    boot_deadline = None if boot_limit_s is None else started + boot_limit_s
    stopped = None
    with log.open("wb", buffering=0) as out:  # unbuffered: the log can be followed as it grows
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                pending = b""
                while True:
                    left = min(deadline, boot_deadline or deadline) - time.monotonic()
                    if left <= 0 or not selector.select(left):
                        stopped = "limit" if boot_deadline is None or deadline <= boot_deadline else "boot"
                        break
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    out.write(chunk)
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        if watch(line, progress, tail):
                            boot_deadline = None
                if pending:
                    watch(pending, progress, tail)
        finally:
            if proc.poll() is None:
                stop(proc, pidns)
            proc.stdout.close()
    return Ended(proc.wait(), stopped, list(tail))


def watch(line: bytes, progress: Progress | None, tail: deque[str]) -> bool:
    """Take one line of output; whether it is the BOOTED line (then said as progress)."""
    text = line.decode(errors="replace").rstrip()
    if text:
        tail.append(text)
    if progress is None:
        return False
    if text.startswith(BOOTED):
        progress.say(f"booted {text.removeprefix(BOOTED).strip()}: running the suite")
        return True
    if text.startswith(RUNNING):
        progress.say(f"running the suite with {text.removeprefix(RUNNING).strip()}")
    counted = COUNT.search(line)
    if counted:
        progress.count(int(counted.group(1)), int(counted.group(2)))
    return False


def stop(proc: subprocess.Popen[bytes], pidns: bool) -> None:
    """End a run that is still going, and everything it started (see the module's docstring)."""
    if pidns:
        try:
            unshare = psutil.Process(proc.pid)
            for process in unshare.children() or [unshare]:
                process.kill()
        except psutil.NoSuchProcess:
            pass
        proc.wait()
        return
    os.killpg(proc.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
