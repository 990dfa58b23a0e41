"""Runtime profiles (docs/profiles.md): a TOML file that says how to start a runtime.

The fixed form runs one `command` that isolates what `isolates` lists. The matrix form builds any
combination of the namespaces in [matrix.flags]: `prefix`, the flags of each isolated namespace (in
the file's order), `suffix`. The harness appends its probe command to either.

Beyond the basic keys (name, description, requires, command, isolates, [matrix], [expect]):
  [matrix.flags] "mnt+pid" = [...]   flags added only when all the namespaces named are isolated
  bundle = "oci"      the harness writes an OCI bundle for each sandbox (nsconform.runtimes.bundles): {bundle}
                      holds config.json, with the combination's namespaces (mnt always) and the probe
                      command as process.args, and rootfs/. `command` starts it and gets nothing
                      appended; the runtime builds any combination; `isolates` is optional
  bundle = "rootfs"   the harness makes {rootfs}, an empty root with mount points and the host's
                      /bin, /lib ... symlinks, for a runtime that takes a root directory
  cleanup = [...]     a command run after each sandbox has closed, whatever happened (its exit
                      status is ignored: it must be safe to run when nothing is left)
  version = [...]     a command whose output (its first lines) the report records as the runtime's version
  combinations = "declared"  with bundle = "oci": the runtime builds only what `isolates` lists (a sandbox
                      with a kernel of its own isolates everything, whatever the bundle asks)
  [oci]               with bundle = "oci", what the generated config.json needs for this runtime:
    mounts = [{...}]  OCI mounts entries (destination, source, type, options) added to the bundle's
    capabilities = [...]  the capability names the runtime knows (the bundle grants no other), or
    features = [...]  a command printing the runtime's features JSON (`runc features`), which lists them
    rootfs_propagation = "..."  the bundle's linux.rootfsPropagation (the runtime's default without it)
Placeholders, replaced in every argument of command, [matrix], cleanup and [oci] mounts: {id} (a name
unique to each sandbox, from nsconform.hygiene.naming), {volume} (the harness's scratch directory, with
its own mount points under it, for a runtime with a root of its own to bind at the same path inside),
{bundle} and {rootfs}.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nsconform.inputs import NAME_CHARS, PROFILE_BYTES, InputError, read_limited
from nsconform.namespaces import ALL, Combination
from nsconform.runtimes import hardening
from nsconform.runtimes.declared import Expect, IdMap
from nsconform.runtimes.hardening import Hardening

TOP_KEYS = (
    "name",
    "description",
    "requires",
    "command",
    "isolates",
    "matrix",
    "expect",
    "bundle",
    "cleanup",
    "version",
    "oci",
    "combinations",
    "hardening",
)
MATRIX_KEYS = ("prefix", "suffix", "flags")
EXPECT_KEYS = ("hostname", "uid_map", "gid_map", "propagation")
PROPAGATIONS = ("private", "slave")  # how host mounts made after the start reach the sandbox: never, or they do
BUNDLES = ("oci", "rootfs")
OCI_KEYS = ("mounts", "capabilities", "features", "rootfs_propagation")
OCI_MOUNT_KEYS = ("destination", "source", "type", "options")
ROOTFS_PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")
# The namespaces an OCI bundle (runtime-spec 1.0) can ask for; a rootfs needs its own mount namespace.
OCI_NAMESPACES = frozenset({"uts", "pid", "mnt", "ipc", "net", "user", "cgroup"})
OCI_ALWAYS = frozenset({"mnt"})
# placeholder -> the bundles that provide it (None: every profile has it)
PLACEHOLDERS = {"{id}": None, "{volume}": None, "{bundle}": ("oci",), "{rootfs}": ("oci", "rootfs")}


class ProfileError(ValueError):
    """A profile file that cannot be used: nothing runs."""


@dataclass(frozen=True)
class Matrix:
    prefix: tuple[str, ...]
    suffix: tuple[str, ...]
    # (namespaces that must all be isolated, flags), in the file's order
    flags: tuple[tuple[Combination, tuple[str, ...]], ...]

    @property
    def namespaces(self) -> Combination:
        """The namespaces this matrix can isolate (those with flags of their own)."""
        return frozenset(next(iter(key)) for key, _ in self.flags if len(key) == 1)

    def argv(self, combination: Combination) -> list[str]:
        chosen = [arg for key, flags in self.flags if key <= combination for arg in flags]
        return [*self.prefix, *chosen, *self.suffix]


@dataclass(frozen=True)
class Oci:
    """A profile's [oci] table: what the generated bundle needs for this runtime."""

    mounts: tuple[dict[str, Any], ...] = ()
    capabilities: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    rootfs_propagation: str | None = None


@dataclass(frozen=True)
class Profile:
    path: Path
    name: str
    description: str
    requires: tuple[str, ...]
    command: tuple[str, ...] | None
    isolates: Combination | None
    matrix: Matrix | None
    expect: Expect
    bundle: str | None
    cleanup: tuple[str, ...] | None
    version: tuple[str, ...] | None = None
    oci: Oci | None = None
    declared_only: bool = False  # combinations = "declared"
    hardening: Hardening = field(
        default_factory=Hardening
    )  # [hardening]: the promise beyond namespaces, the as-shipped sandbox

    def uses(self, placeholder: str) -> bool:
        """Whether an argument of the profile (command, matrix, cleanup, [oci] mounts) holds `placeholder`."""
        args = [*(self.command or ()), *(self.cleanup or ())]
        if self.matrix is not None:
            args += [*self.matrix.prefix, *self.matrix.suffix, *(a for _, flags in self.matrix.flags for a in flags)]
        if self.oci is not None:
            args += [v for m in self.oci.mounts for v in (m["destination"], m["source"])]
        args += [*(self.hardening.command or ()), *(self.hardening.unfiltered or ())]
        return any(placeholder in arg for arg in args)

    @property
    def can_isolate(self) -> Combination:
        if self.bundle == "oci":
            return OCI_NAMESPACES
        if self.matrix is not None:
            return self.matrix.namespaces
        return self.isolates or frozenset()

    @property
    def always(self) -> Combination:
        return OCI_ALWAYS if self.bundle == "oci" else frozenset()

    @property
    def any_combination(self) -> bool:
        return (self.matrix is not None or self.bundle == "oci") and not self.declared_only


def load(path: Path) -> Profile:
    """Read and check the profile at `path`; a ProfileError names the file and the key."""
    try:
        text = read_limited(path, PROFILE_BYTES, "profile").decode()
    except InputError as e:
        raise ProfileError(str(e)) from None
    except UnicodeDecodeError as e:
        raise ProfileError(f"profile {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Profile:
    """Check a profile's TOML `text`; `path` is where it came from, for messages and the report."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {path}: not valid TOML: {e}") from None
    return _Reader(path).profile(data)


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ProfileError:
        return ProfileError(f"profile {self.path}: key `{key}`: {problem}")

    # -- values -------------------------------------------------------------------------------

    def known_keys(self, table: dict[str, Any], known: Iterable[str], where: str = "") -> None:
        for key in table:
            if key not in known:
                raise self.fail(where + key, f"unknown key (known here: {', '.join(known)})")

    def table(self, data: dict[str, Any], key: str, where: str = "") -> dict[str, Any] | None:
        value = data.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.fail(where + key, f"must be a table ([{where + key}]), not {kind(value)}")
        return value

    def text(self, data: dict[str, Any], key: str, where: str = "", *, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(where + key, "missing (it is required)")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where + key, f"must be a non-empty string, not {kind(value)}")
        return value

    def strings(self, data: dict[str, Any], key: str, where: str = "", *, empty: bool = True) -> tuple[str, ...] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where + key, f"must be a list of strings, not {kind(value)}")
        if not value and not empty:
            raise self.fail(where + key, "must not be empty")
        if any(not v for v in value):
            raise self.fail(where + key, "holds an empty string")
        return tuple(value)

    def namespaces(self, names: Iterable[str], key: str) -> Combination:
        listed = list(names)
        unknown = [n for n in listed if n not in ALL]
        if unknown:
            raise self.fail(key, f"unknown namespace {', '.join(unknown)} (known: {', '.join(ALL)})")
        repeated = sorted({n for n in listed if listed.count(n) > 1})
        if repeated:
            raise self.fail(key, f"namespace {', '.join(repeated)} listed twice")
        return frozenset(listed)

    def id_map(self, data: dict[str, Any], key: str) -> IdMap | None:
        value = data.get(key)
        if value is None:
            return None
        shape = "a list of [inside, outside, count] lines of non-negative integers, count at least 1"
        if not isinstance(value, list) or not value:
            raise self.fail(f"expect.{key}", f"must be {shape}, not {kind(value)}")
        for line in value:
            if (
                not isinstance(line, list)
                or len(line) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in line)
                or line[2] < 1
            ):
                raise self.fail(f"expect.{key}", f"must be {shape}; {line!r} is not")
        return tuple((line[0], line[1], line[2]) for line in value)

    # -- the profile ------------------------------------------------------------------------------

    def profile(self, data: dict[str, Any]) -> Profile:
        self.known_keys(data, TOP_KEYS)
        name = self.text(data, "name", required=True)
        if name is not None and len(name) > NAME_CHARS:
            raise self.fail("name", f"{len(name):,} characters: a name may have at most {NAME_CHARS}")
        description = self.text(data, "description") or ""
        requires = self.strings(data, "requires") or ()
        command = self.strings(data, "command", empty=False)
        matrix = self.matrix(data)
        bundle = data.get("bundle")
        if bundle is not None and bundle not in BUNDLES:
            raise self.fail("bundle", f"must be one of {', '.join(map(repr, BUNDLES))}, not {bundle!r}")
        if command is not None and matrix is not None:
            raise self.fail("matrix", "give either `command` (the fixed form) or [matrix], not both")
        if command is None and matrix is None:
            raise self.fail("command", "missing: give either `command` with `isolates`, or a [matrix] table")
        if bundle == "oci" and matrix is not None:
            raise self.fail("bundle", "an OCI bundle carries the namespaces itself: use `command`, not [matrix]")
        declared_only = self.combinations(data, bundle)
        isolates = self.isolates(data, command, matrix, bundle)
        if declared_only and isolates is None:
            raise self.fail("isolates", 'missing: with combinations = "declared" it is the only combination built')
        cleanup = self.strings(data, "cleanup", empty=False)
        oci = self.oci(data, bundle)
        declared = hardening.parse(self.table(data, "hardening"), self, bundle)
        self.placeholders(command, matrix, cleanup, bundle, oci, declared)
        return Profile(
            path=self.path,
            name=name or "",
            description=description,
            requires=requires,
            command=command,
            isolates=isolates,
            matrix=matrix,
            expect=self.expect(data),
            bundle=bundle,
            cleanup=cleanup,
            version=self.strings(data, "version", empty=False),
            oci=oci,
            declared_only=declared_only,
            hardening=declared,
        )

    def combinations(self, data: dict[str, Any], bundle: str | None) -> bool:
        value = self.text(data, "combinations")
        if value is None:
            return False
        if value != "declared":
            raise self.fail("combinations", f'the only value is "declared", not {value!r}')
        if bundle != "oci":
            raise self.fail("combinations", 'only a profile with bundle = "oci" builds other combinations by default')
        return True

    def matrix(self, data: dict[str, Any]) -> Matrix | None:
        table = self.table(data, "matrix")
        if table is None:
            return None
        self.known_keys(table, MATRIX_KEYS, "matrix.")
        flags = self.table(table, "flags", "matrix.")
        if not flags:
            raise self.fail("matrix.flags", "missing or empty: give the flags of at least one namespace")
        keyed = {key: self.namespaces(key.split("+"), f"matrix.flags.{key}") for key in flags}
        singles = {next(iter(names)) for names in keyed.values() if len(names) == 1}
        for key, names in keyed.items():
            if not names <= singles:
                missing = ", ".join(sorted(names - singles))
                raise self.fail(f"matrix.flags.{key}", f"{missing} has no flags of its own")
        parsed = [(names, self.strings(flags, key, "matrix.flags.", empty=False) or ()) for key, names in keyed.items()]
        return Matrix(
            prefix=self.strings(table, "prefix", "matrix.") or (),
            suffix=self.strings(table, "suffix", "matrix.") or (),
            flags=tuple(parsed),
        )

    def isolates(
        self, data: dict[str, Any], command: tuple[str, ...] | None, matrix: Matrix | None, bundle: str | None
    ) -> Combination | None:
        value = data.get("isolates")
        if value is None:
            if command is not None and bundle != "oci":
                raise self.fail("isolates", "missing: a fixed `command` must say which namespaces it isolates")
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail("isolates", f"must be a list of namespace names, not {kind(value)}")
        isolates = self.namespaces(value, "isolates")
        if matrix is not None and not isolates <= matrix.namespaces:
            missing = ", ".join(sorted(isolates - matrix.namespaces))
            raise self.fail("isolates", f"[matrix.flags] has no flags for {missing}")
        if bundle == "oci" and not OCI_ALWAYS <= isolates <= OCI_NAMESPACES:
            raise self.fail(
                "isolates", f"an OCI bundle always isolates mnt and can isolate {', '.join(sorted(OCI_NAMESPACES))}"
            )
        return isolates

    def expect(self, data: dict[str, Any]) -> Expect:
        table = self.table(data, "expect")
        if table is None:
            return Expect()
        self.known_keys(table, EXPECT_KEYS, "expect.")
        hostname = self.text(table, "hostname", "expect.")
        if hostname is not None and len(hostname.encode()) > 64:
            raise self.fail("expect.hostname", "longer than 64 bytes, the kernel's limit")
        propagation = self.text(table, "propagation", "expect.")
        if propagation is not None and propagation not in PROPAGATIONS:
            raise self.fail("expect.propagation", f"must be one of {', '.join(PROPAGATIONS)}, not {propagation!r}")
        return Expect(
            hostname=hostname,
            uid_map=self.id_map(table, "uid_map"),
            gid_map=self.id_map(table, "gid_map"),
            propagation=propagation,
        )

    def oci(self, data: dict[str, Any], bundle: str | None) -> Oci | None:
        table = self.table(data, "oci")
        if table is None:
            return None
        if bundle != "oci":
            raise self.fail("oci", 'only a profile with bundle = "oci" has a generated config.json to describe')
        self.known_keys(table, OCI_KEYS, "oci.")
        capabilities = self.strings(table, "capabilities", "oci.")
        if capabilities is not None and not all(c.startswith("CAP_") for c in capabilities):
            raise self.fail("oci.capabilities", "must name capabilities as OCI does (CAP_SYS_ADMIN ...)")
        features = self.strings(table, "features", "oci.", empty=False)
        if capabilities is not None and features is not None:
            raise self.fail("oci.features", "give either `capabilities` or `features`, not both")
        propagation = self.text(table, "rootfs_propagation", "oci.")
        if propagation is not None and propagation not in ROOTFS_PROPAGATIONS:
            raise self.fail(
                "oci.rootfs_propagation", f"must be one of {', '.join(ROOTFS_PROPAGATIONS)}, not {propagation!r}"
            )
        return Oci(
            mounts=self.oci_mounts(table),
            capabilities=capabilities,
            features=features,
            rootfs_propagation=propagation,
        )

    def oci_mounts(self, table: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        value = table.get("mounts")
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
            raise self.fail("oci.mounts", f"must be a list of tables (OCI mounts entries), not {kind(value)}")
        for entry in value:
            self.known_keys(entry, OCI_MOUNT_KEYS, "oci.mounts.")
            for key in ("destination", "source", "type"):
                self.text(entry, key, "oci.mounts.", required=True)
            self.strings(entry, "options", "oci.mounts.")
        return tuple(value)

    def placeholders(
        self,
        command: tuple[str, ...] | None,
        matrix: Matrix | None,
        cleanup: tuple[str, ...] | None,
        bundle: str | None,
        oci: Oci | None,
        declared: Hardening,
    ) -> None:
        places: dict[str, Iterable[str]] = {"command": command or (), "cleanup": cleanup or ()}
        for key in ("spec", "command", "unfiltered"):
            places[f"hardening.{key}"] = getattr(declared, key) or ()
        if oci is not None:
            places["oci.mounts"] = [v for m in oci.mounts for v in (m["destination"], m["source"])]
        if matrix is not None:
            places["matrix"] = [*matrix.prefix, *matrix.suffix, *(a for _, flags in matrix.flags for a in flags)]
        for key, args in places.items():
            for holder, bundles in PLACEHOLDERS.items():
                if bundles and bundle not in bundles and any(holder in arg for arg in args):
                    need = " or ".join(f'bundle = "{b}"' for b in bundles)
                    raise self.fail(key, f"uses {holder}, which only a profile with {need} provides")
        if bundle == "oci" and not any("{bundle}" in arg for arg in command or ()):
            raise self.fail("command", 'with bundle = "oci" it must pass {bundle} to the runtime')


def kind(value: Any) -> str:
    """A TOML-ish name of a value's type, for messages."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)
