"""`--nsc-attach PID`: the sandbox under test is a running process's set of namespaces, joined by the probe.

The probe joins them as `nsenter -t PID -a` would (nsconform/inside/joiner.py): setns on a pidfd of the
target, all at once, and a fork into its PID namespace. What the target claims to isolate comes
from the `--nsc-runtime` profile's `isolates` when it has them, else from the namespaces whose inode
differs from the harness's (the report says which, `runtime.attach.claimed_from`). The target is
someone's live workload: checks declared `attach_unsafe` (nsconform.guarantees) do not run on it,
and closing a sandbox ends only the probe, never a process of the target.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from nsconform.hygiene import naming
from nsconform.hygiene.journal import read_starttime
from nsconform.hygiene.objects import zombie
from nsconform.inside import code, probe_command
from nsconform.inside.probe import ns_inodes
from nsconform.namespaces import Combination, combo_id
from nsconform.runtimes.declared import Expect
from nsconform.sandbox.sandbox import Launch, SandboxError

CLAIMED_FROM = ("profile", "inodes")


class AttachError(ValueError):
    """--nsc-attach names no process the harness can audit: a usage error before anything runs."""


@cache
def joiner_code() -> str:
    return code("probe", "launcher", "joiner", main="main(loads(sys.argv[2]))")


@dataclass(frozen=True)
class Target:
    """A process as the harness saw it at the start: its pid, start time and namespaces."""

    pid: int
    starttime: int
    inodes: dict[str, tuple[int, int]] = field(hash=False)

    @classmethod
    def find(cls, pid: int) -> Target:
        if pid <= 0:
            raise AttachError(f"--nsc-attach {pid}: not a process id (a positive integer)")
        try:
            started = read_starttime(pid)
        except FileNotFoundError:
            raise AttachError(f"--nsc-attach {pid}: no such process") from None
        if zombie(pid):
            raise AttachError(
                f"--nsc-attach {pid}: process {pid} has exited (a zombie its parent has not reaped): "
                "it has no namespaces left to audit"
            )
        inodes = {ns: (dev, ino) for ns, (dev, ino) in ns_inodes(pid).items()}
        if not inodes:
            why = "they are not readable" if os.path.exists(f"/proc/{pid}") else "it has exited"
            raise AttachError(
                f"--nsc-attach {pid}: this user may not enter the namespaces of process {pid} ({why}: entering "
                f"them needs what ptrace needs, e.g. root or the same user as the process)"
            )
        if pid == os.getpid():
            raise AttachError(f"--nsc-attach {pid}: that is the harness itself")
        return cls(pid=pid, starttime=started, inodes=inodes)

    def differs_from_host(self) -> Combination:
        """The namespaces of the target that are not the harness's."""
        host = ns_inodes()
        return frozenset(ns for ns, inode in self.inodes.items() if tuple(host.get(ns, ())) != inode)

    def gone(self) -> str | None:
        """Why the target is no longer the process the harness saw, or None."""
        try:
            if read_starttime(self.pid) == self.starttime:
                return None
        except FileNotFoundError:
            return f"the target process {self.pid} has exited"
        return f"the target process {self.pid} has exited (its pid now names another process)"


@dataclass(frozen=True)
class AttachRuntime:
    """The namespaces of a running process `target`; `base` the --nsc-runtime profile that says what it claims."""

    target: Target
    base: Any = None  # a ProfileRuntime, or None (the default native runtime: nothing declared)
    ns_files: bool = False  # join through /proc/PID/ns/* one by one instead of a pidfd (older kernels)
    name: str = "attach"
    any_combination: bool = False

    @property
    def claimed_from(self) -> str:
        return "profile" if self.base is not None and self.base.isolates is not None else "inodes"

    @property
    def isolates(self) -> frozenset[str]:
        if self.claimed_from == "profile":
            return frozenset(self.base.isolates)
        return self.target.differs_from_host()

    @property
    def profile(self) -> str | None:
        return self.base.profile if self.base is not None else None

    @property
    def expect(self) -> Expect:
        return self.base.expect if self.base is not None else Expect()

    @property
    def hardening(self) -> Any:
        """The base profile's [hardening] (nsconform.runtimes.hardening.Hardening), or None."""
        return getattr(self.base, "hardening", None)

    @property
    def attach(self) -> dict[str, Any]:
        """The report's `runtime.attach`."""
        return {"pid": self.target.pid, "claimed_from": self.claimed_from}

    def unavailable(self) -> str | None:
        return None  # a target that has gone makes launch() fail: `error` results, never skips

    def buildable(self, combination: Combination) -> Combination:
        return self.isolates

    def launch(self, combination: frozenset[str]) -> Launch:
        claimed = frozenset(combination)
        if claimed != self.isolates:
            raise SandboxError(
                f"attach: process {self.target.pid} is one fixed set of namespaces ({combo_id(self.isolates)}), "
                f"not {combo_id(claimed)}"
            )
        gone = self.target.gone()
        if gone:
            raise SandboxError(f"attach: {gone}")
        config = {
            "pid": self.target.pid,
            "starttime": self.target.starttime,
            "inodes": {ns: list(inode) for ns, inode in self.target.inodes.items()},
            "ns_files": self.ns_files,
        }
        tag = naming.unique("probe")
        argv = [*probe_command(tag), json.dumps(config)]
        return Launch(argv=argv, code=joiner_code(), claimed=claimed, joined=True, name=tag)
