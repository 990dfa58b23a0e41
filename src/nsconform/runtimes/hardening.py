"""What a runtime promises beyond its namespaces, and how its users start it: a profile's [hardening] table.

    [hardening]
    source = "..."          where these defaults are documented (required with any promise): the report cites it
    # the "as shipped" sandbox, started the way the runtime's users start it (nsconform.fixtures.shipped):
    spec = ["runc", "spec", "--bundle", "{bundle}"]  # bundle = "oci": writes the runtime's own default config.json
    command = [...]         # any other profile: the command of its as-shipped sandbox (the probe is appended)
    unfiltered = [...]      # that command without the seccomp filter: the twin that measures what each syscall
                            # gives unfiltered (an OCI twin is the same config.json without linux.seccomp)
    # caps
    capabilities = ["CAP_AUDIT_WRITE", ...]  # the capability set root inside holds (effective, permitted, bounding)
    no_new_privs = true     # the no_new_privs bit set
    # seccomp
    seccomp = "filter"      # the mode: "filter" or "disabled"
    must_refuse = ["keyctl", ...]  # syscalls the filter refuses (nsconform.inside.areas.seccomp knows their numbers)
    # paths
    masked_paths = [...]    # paths that show nothing inside (an empty file or directory, or nothing at all)
    readonly_paths = [...]  # paths that are not writable inside
    # devices
    devices = ["null", ...] # the character devices under /dev that may be opened inside (names under /dev)
    # knobs
    knobs = ["core_pattern", ...]  # host-global knobs promised out of reach (read-only or refused inside)
    # sockets
    sockets = [...]         # host listening Unix sockets a sandbox may reach (paths inside); [] for none

Each area is declared when one of its keys is set (AREA_KEYS); the others report as information only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from nsconform.inside.areas.seccomp import SYSCALLS
from nsconform.reach.knobs import KNOBS

# area -> the [hardening] keys that declare its promise
AREA_KEYS: dict[str, tuple[str, ...]] = {
    "caps": ("capabilities", "no_new_privs"),
    "seccomp": ("seccomp", "must_refuse"),
    "paths": ("masked_paths", "readonly_paths"),
    "devices": ("devices",),
    "knobs": ("knobs",),
    "sockets": ("sockets",),
}
START_KEYS = ("source", "spec", "command", "unfiltered")
SECCOMP_MODES = ("filter", "disabled")
SECCOMP_STATUS = {"disabled": "0", "strict": "1", "filter": "2"}  # Seccomp: in /proc/PID/status


@dataclass(frozen=True)
class Hardening:
    """A profile's [hardening]; a field is None where the profile declares nothing about it."""

    source: str | None = None
    spec: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    unfiltered: tuple[str, ...] | None = None
    capabilities: tuple[str, ...] | None = None
    no_new_privs: bool | None = None
    seccomp: str | None = None
    must_refuse: tuple[str, ...] | None = None
    masked_paths: tuple[str, ...] | None = None
    readonly_paths: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    knobs: tuple[str, ...] | None = None
    sockets: tuple[str, ...] | None = None

    @property
    def shipped(self) -> bool:
        """Whether the profile says how to start its as-shipped sandbox."""
        return self.spec is not None or self.command is not None

    def declares(self, area: str) -> bool:
        return any(getattr(self, key) is not None for key in AREA_KEYS[area])

    @property
    def areas(self) -> tuple[str, ...]:
        """The areas this profile declares a promise in, in nsconform.areas.ALL's order."""
        return tuple(area for area in AREA_KEYS if self.declares(area))

    def to_json(self) -> dict[str, Any]:
        """The declared promise, for the report (lists as lists, undeclared keys left out)."""
        found: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name not in ("spec", "command", "unfiltered"):
                found[f.name] = list(value) if isinstance(value, tuple) else value
        return found


class Reader(Protocol):
    """The part of the profile reader (nsconform.runtimes.profiles) this table is read with."""

    def fail(self, key: str, problem: str) -> Exception: ...

    def known_keys(self, table: dict[str, Any], known: Iterable[str], where: str = "") -> None: ...

    def text(self, data: dict[str, Any], key: str, where: str = "", *, required: bool = False) -> str | None: ...

    def strings(
        self, data: dict[str, Any], key: str, where: str = "", *, empty: bool = True
    ) -> tuple[str, ...] | None: ...


def parse(table: dict[str, Any] | None, reader: Reader, bundle: str | None) -> Hardening:
    """Check a profile's [hardening] table (None: the profile has none)."""
    if table is None:
        return Hardening()
    where = "hardening."
    promise_keys = [key for keys in AREA_KEYS.values() for key in keys]
    reader.known_keys(table, [*START_KEYS, *promise_keys], where)
    values: dict[str, Any] = {"source": reader.text(table, "source", where)}
    for key in ("spec", "command", "unfiltered"):
        values[key] = reader.strings(table, key, where, empty=False)
    if values["spec"] is not None and bundle != "oci":
        raise reader.fail(where + "spec", 'only a profile with bundle = "oci" starts from a runtime-written bundle')
    if values["command"] is not None and bundle == "oci":
        raise reader.fail(where + "command", 'with bundle = "oci" the as-shipped sandbox comes from `spec`')
    if values["unfiltered"] is not None and values["command"] is None:
        raise reader.fail(where + "unfiltered", "the twin of an as-shipped `command`: give that command too")
    for key in ("capabilities", "must_refuse", "masked_paths", "readonly_paths", "devices", "knobs", "sockets"):
        values[key] = reader.strings(table, key, where)
    if values["capabilities"] is not None and not all(c.startswith("CAP_") for c in values["capabilities"]):
        raise reader.fail(where + "capabilities", "must name capabilities as OCI does (CAP_SYS_ADMIN ...)")
    for key in ("masked_paths", "readonly_paths", "sockets"):
        if values[key] is not None and not all(p.startswith("/") for p in values[key]):
            raise reader.fail(where + key, "must be absolute paths")
    unknown_knobs = sorted(set(values["knobs"] or ()) - set(KNOBS))
    if unknown_knobs:
        raise reader.fail(where + "knobs", f"unknown knob {', '.join(unknown_knobs)} (known: {', '.join(KNOBS)})")
    if any(name.startswith("/") for name in values["devices"] or ()):
        raise reader.fail(where + "devices", "names devices as under /dev (null, pts/*), not as paths")
    nnp = table.get("no_new_privs")
    if nnp is not None and not isinstance(nnp, bool):
        raise reader.fail(where + "no_new_privs", "must be true or false")
    values["no_new_privs"] = nnp
    mode = reader.text(table, "seccomp", where)
    if mode is not None and mode not in SECCOMP_MODES:
        raise reader.fail(where + "seccomp", f"must be one of {', '.join(SECCOMP_MODES)}, not {mode!r}")
    values["seccomp"] = mode
    unknown = sorted(set(values["must_refuse"] or ()) - set(SYSCALLS))
    if unknown:
        raise reader.fail(
            where + "must_refuse", f"no harmless way known to try {', '.join(unknown)} (known: {', '.join(SYSCALLS)})"
        )
    if values["must_refuse"] and mode != "filter":
        raise reader.fail(where + "must_refuse", 'a filter refuses syscalls: it needs seccomp = "filter"')
    hardening = Hardening(**values)
    if hardening.areas and not hardening.source:
        raise reader.fail(where + "source", "missing: a declared promise cites where the runtime documents it")
    if hardening.areas and not hardening.shipped:
        raise reader.fail(
            where + ("spec" if bundle == "oci" else "command"), "missing: how the as-shipped sandbox starts"
        )
    return hardening
