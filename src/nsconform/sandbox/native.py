"""The native runtime: the harness's own sandboxes, built with unshare(2) by nsconform/inside/launcher.py."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from nsconform.hygiene import naming
from nsconform.inside import code, probe_command, probe_interpreter
from nsconform.namespaces import Combination, flags
from nsconform.runtimes.declared import Expect
from nsconform.sandbox import forkserver
from nsconform.sandbox.sandbox import Launch

# Root inside a new user namespace maps to this unprivileged host range when the harness is root.
SUBORDINATE_RANGE = (100000, 65536)


USERNS_TRIAL = (
    "import ctypes,os,sys;c=ctypes.CDLL(None,use_errno=True);"
    "sys.exit(0 if c.unshare(0x10000000)==0 else os.strerror(ctypes.get_errno()))"
)


@cache
def unprivileged_userns_refused() -> str | None:
    """Why this unprivileged process may not make a user namespace (tried in a child), or None."""
    trial = subprocess.run([probe_interpreter(), "-I", "-S", "-c", USERNS_TRIAL], capture_output=True, text=True)
    if trial.returncode == 0:
        return None
    return (
        f"not root, and the kernel refuses this user a user namespace ({trial.stderr.strip() or trial.returncode}): "
        "run as root, or allow unprivileged user namespaces (user.max_user_namespaces, "
        "kernel.unprivileged_userns_clone, an AppArmor or SELinux policy)"
    )


@cache
def native_code() -> str:
    return code("probe", "launcher", main="launch(loads(sys.argv[2]))")


@dataclass(frozen=True)
class NativeRuntime:
    """Sandboxes for any combination, made in-process by the launcher.

    `omit`, `extra`, `leaks` and `uid_map` build deliberately leaky sandboxes for the negative
    controls: `omit` namespaces are claimed but not unshared, `extra` ones unshared but not
    claimed, `leaks` are the launcher's deliberate flaws (see nsconform/inside/launcher.py), and `uid_map`
    replaces the uid and gid maps the runtime promises (`expect`) when the harness is root.

    Rootless (the harness is not root), every sandbox gets a user namespace, claimed or not:
    without one an unprivileged process can unshare nothing else.
    """

    name: str = "native"
    omit: frozenset[str] = frozenset()
    extra: frozenset[str] = frozenset()
    leaks: frozenset[str] = frozenset()
    uid_map: tuple[tuple[int, int, int], ...] | None = None
    profile: str | None = None
    isolates: frozenset[str] | None = None
    any_combination: bool = True

    def unavailable(self) -> str | None:
        """Rootless, the sandboxes need unprivileged user namespaces: tried for real, never read from a sysctl."""
        return None if os.geteuid() == 0 else unprivileged_userns_refused()

    def buildable(self, combination: Combination) -> Combination:
        return frozenset(combination)

    @property
    def expect(self) -> Expect:
        """The id maps it documents (docs/running.md, "Rootless"), whatever a leaky `uid_map` makes it write."""
        maps: dict = NativeRuntime().id_maps()
        uid_map, gid_map = (tuple((a, b, c) for a, b, c in maps[name]) for name in ("uid_map", "gid_map"))
        return Expect(uid_map=uid_map, gid_map=gid_map)

    def launch(self, combination: Iterable[str]) -> Launch:
        claimed = frozenset(combination)
        actual = (claimed - self.omit) | self.extra | self.always_isolates
        config = {
            "flags": flags(actual),
            "namespaces": sorted(actual),
            "leaks": sorted(self.leaks),
            **self.id_maps(),
        }
        tag = naming.unique("probe")
        argv = [*probe_command(tag), json.dumps(config)]
        server = forkserver.current()  # the session's, if it has one: the launcher is forked, not started
        spawn = functools.partial(server.spawn, config) if server else None
        return Launch(argv=argv, code=native_code(), claimed=claimed, spawn=spawn, name=tag)

    @property
    def always_isolates(self) -> frozenset[str]:
        """Namespaces every sandbox has of its own, whatever the combination: a user namespace when rootless."""
        return frozenset({"user"}) if os.geteuid() != 0 else frozenset()

    def id_maps(self) -> dict[str, object]:
        """The maps the launcher writes: the promised ones, or the leaky `uid_map` of a negative control."""
        maps = promised_id_maps()
        if self.uid_map and os.geteuid() == 0:
            lines = [list(line) for line in self.uid_map]
            maps.update(uid_map=lines, gid_map=lines)
        return maps


def promised_id_maps() -> dict[str, object]:
    """Root inside maps to an unprivileged host range; rootless, to the caller's own ids (setgroups denied)."""
    if os.geteuid() != 0:
        return {"uid_map": [[0, os.geteuid(), 1]], "gid_map": [[0, os.getegid(), 1]], "setgroups": "deny"}
    lines = [[0, *SUBORDINATE_RANGE]]
    return {"uid_map": lines, "gid_map": [list(line) for line in lines], "setgroups": "allow"}
