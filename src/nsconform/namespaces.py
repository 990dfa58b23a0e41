"""The namespace table (names, clone flags, setns order) and the combination matrix (--nsc-namespaces,
--nsc-combinations). The one source of these: the code sent into a sandbox gets the table written in
front of it (nsconform.inside.code)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations as _subsets

# The kernel's own names, as in /proc/self/ns/, with their CLONE_NEW* flag.
CLONE_FLAGS: dict[str, int] = {
    "uts": 0x04000000,
    "pid": 0x20000000,
    "mnt": 0x00020000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}
# The order in which nsenter(1) enters a process's namespaces by their files: user first (it grants the
# capabilities the others need), mnt late (after it, /proc is the target's), time last.
SETNS_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time")
ALL = tuple(CLONE_FLAGS)
DEFAULT = ("uts", "pid", "mnt", "ipc", "net", "user")
MODES = ("all", "singles", "declared")

Combination = frozenset[str]


class NamespaceError(ValueError):
    """A namespace list names something that is not a namespace."""


def parse_list(text: str, *, what: str = "--nsc-namespaces") -> tuple[str, ...]:
    """Parse a comma list of namespace names, keeping the kernel's order and dropping repeats."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise NamespaceError(f"{what} is empty: name at least one of {', '.join(ALL)}")
    validate(names, what=what)
    return tuple(ns for ns in ALL if ns in names)


def validate(names: Iterable[str], *, what: str) -> None:
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise NamespaceError(f"{what}: unknown namespace {', '.join(unknown)} (known: {', '.join(ALL)})")


NONE = "none"  # the empty combination: every namespace shared
NA = "n/a"  # in place of a combination, for a check that applies to none of the run's (its one skipped result)


def combo_id(combination: Iterable[str] | None) -> str:
    """Readable, stable id of a combination: sorted names joined by '+', 'none' for the empty one, 'n/a' for
    None (a check's result on no combination)."""
    if combination is None:
        return NA
    names = sorted(combination)
    return "+".join(names) if names else NONE


def matrix(namespaces: Iterable[str], mode: str, declared: Iterable[str] | None = None) -> list[Combination]:
    """The combinations to build for `mode`, smallest first, each sorted set once."""
    names = tuple(namespaces)
    if mode == "all":
        combos = [frozenset(c) for size in range(len(names) + 1) for c in _subsets(names, size)]
    elif mode == "singles":
        combos = [frozenset(), *(frozenset({ns}) for ns in names), frozenset(names)]
    elif mode == "declared":
        if declared is None:
            raise NamespaceError("--nsc-combinations declared needs a runtime profile with `isolates`")
        combos = [frozenset(declared)]
    else:
        raise NamespaceError(f"--nsc-combinations: unknown mode {mode!r} (known: {', '.join(MODES)})")
    unique: dict[str, Combination] = {}
    for combo in combos:
        unique.setdefault(combo_id(combo), combo)
    return list(unique.values())


def flags(combination: Iterable[str]) -> int:
    value = 0
    for ns in combination:
        value |= CLONE_FLAGS[ns]
    return value
