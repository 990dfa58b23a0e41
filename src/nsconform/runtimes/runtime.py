"""What `--nsc-runtime NAME|PATH` resolves to: the native runtime, or one described by a profile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Protocol

from nsconform.host.observe import current_volume, make_scratch_dir
from nsconform.hygiene import journal, naming
from nsconform.hygiene.objects import CLEANUP_TIMEOUT, clean_container
from nsconform.inside import code, probe_command
from nsconform.namespaces import Combination, combo_id
from nsconform.runtimes.bundles import (
    BundleSpec,
    make_rootfs,
    remove_scratch,
    write_oci_bundle,
    write_shipped_bundle,
)
from nsconform.runtimes.declared import Expect
from nsconform.runtimes.hardening import Hardening
from nsconform.runtimes.profiles import Profile, ProfileError, load
from nsconform.sandbox.native import NativeRuntime
from nsconform.sandbox.sandbox import Launch, SandboxError

PROFILES_DIR = Path(__file__).resolve().parent / "bundled"


class Runtime(Protocol):
    """A way to start a sandbox for a combination of namespaces, with the probe inside."""

    name: str
    profile: str | None  # the profile file it came from, if any
    isolates: frozenset[str] | None  # what it claims when it cannot build any combination
    any_combination: bool
    expect: Expect  # what it declares beyond the namespaces (a profile's [expect])
    # optional, read with always_isolated(): always_isolates, the namespaces every sandbox has of its own
    # optional, read with declared_hardening(): hardening, a profile's [hardening]; and launch_shipped(), which
    # starts the as-shipped sandbox it describes (nsconform.fixtures.shipped)
    # optional, read with attached(): attach, the running process whose namespaces it joins (--nsc-attach)

    def unavailable(self) -> str | None:
        """Why no sandbox can be made here (a missing executable ...), or None."""

    def buildable(self, combination: Combination) -> Combination:
        """The combination this runtime builds when asked for `combination` (the matrix keeps only those)."""

    def launch(self, combination: frozenset[str]) -> Launch:
        """The command, probe code and cleanup for one sandbox of `combination`."""


class RuntimeSpecError(ValueError):
    """--nsc-runtime names nothing usable."""


def bundled() -> list[str]:
    """Names of the profiles that come with nsconform."""
    return sorted(path.stem for path in PROFILES_DIR.glob("*.toml"))


def resolve(value: str, rootdir: Path) -> Runtime:
    """`native`, a bundled profile's name, or a profile file (relative to `rootdir`)."""
    if value == "native":
        return NativeRuntime()
    path = PROFILES_DIR / f"{value}.toml"
    if "/" in value or value.endswith(".toml") or not path.is_file():
        path = Path(rootdir, value)
        if not path.is_file():
            known = ", ".join(["native", *bundled()])
            raise RuntimeSpecError(f"--nsc-runtime {value}: neither a known runtime ({known}) nor a profile file")
    try:
        return ProfileRuntime(load(path))
    except ProfileError as e:
        raise RuntimeSpecError(str(e)) from None


@cache
def probe_code() -> str:
    return code("probe", main="serve()")


@dataclass(frozen=True)
class ShippedSpec:
    """Which as-shipped sandbox to start: the runtime's own, or its twin without the seccomp filter."""

    unfiltered: bool = False


@dataclass(frozen=True)
class ProfileRuntime:
    """A runtime described by a profile (nsconform.runtimes.profiles): its command, with the probe's appended."""

    spec: Profile

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def profile(self) -> str:
        return str(self.spec.path)

    @property
    def isolates(self) -> frozenset[str] | None:
        return self.spec.isolates

    @property
    def any_combination(self) -> bool:
        return self.spec.any_combination

    @property
    def expect(self) -> Expect:
        return self.spec.expect

    @property
    def hardening(self) -> Hardening:
        return self.spec.hardening

    def unavailable(self) -> str | None:
        missing = [exe for exe in self.spec.requires if shutil.which(exe) is None]
        if missing:
            return f"{', '.join(missing)} not found on PATH (profile {self.spec.path}: requires)"
        if self.spec.bundle and os.geteuid() != 0:
            return f'bundle = "{self.spec.bundle}": the harness makes bundles for runtimes started as root only'
        return None

    def buildable(self, combination: Combination) -> Combination:
        if not self.spec.any_combination:
            return self.spec.isolates or frozenset()
        return (frozenset(combination) | self.spec.always) & self.spec.can_isolate

    def launch(self, combination: frozenset[str]) -> Launch:
        claimed = frozenset(combination)
        if self.buildable(claimed) != claimed:
            raise SandboxError(
                f"runtime {self.name} cannot build {combo_id(claimed)}: asked for it, it builds "
                f"{combo_id(self.buildable(claimed))}"
            )
        return self._launch(claimed, None)

    def launch_shipped(self, *, unfiltered: bool = False) -> Launch:
        """The runtime's as-shipped sandbox (a profile's [hardening]: `spec` or `command`): started the way its
        users start it, with none of the harness's additions; `unfiltered`: its twin without the seccomp filter."""
        declared = self.spec.hardening
        if not declared.shipped:
            raise SandboxError(f"runtime {self.name}: its profile says nothing of an as-shipped sandbox ([hardening])")
        if unfiltered and declared.command is not None and declared.unfiltered is None:
            raise SandboxError(f"runtime {self.name}: its profile gives no unfiltered twin ([hardening] unfiltered)")
        return self._launch(self.spec.isolates or frozenset(), ShippedSpec(unfiltered))

    def _launch(self, claimed: Combination, shipped: ShippedSpec | None) -> Launch:
        """A sandbox of `claimed`: the harness's own (shipped None), or the as-shipped one."""
        tag = naming.unique("probe")
        probe = probe_command(tag)
        values = {"{id}": naming.unique("ct")}
        cleanup: list = []
        record = journal.current()
        try:
            volume = current_volume()
            if volume is None and self.spec.uses("{volume}"):  # made outside a session: an empty one of its own
                volume, volume_entry = make_scratch_dir("volume")
                cleanup.append(partial(remove_scratch, Path(volume), volume_entry, record))
                os.chmod(volume, 0o711)
            values["{volume}"] = volume or ""
            if self.spec.bundle:
                path, entry = make_scratch_dir("bundle")
                scratch = Path(path)
                cleanup.append(partial(remove_scratch, scratch, entry, record))
                scratch.chmod(0o711)  # root inside may be an unprivileged host uid that must reach rootfs/
                values |= {"{bundle}": str(scratch), "{rootfs}": str(scratch / "rootfs")}
                if self.spec.bundle == "oci" and shipped is not None:
                    spec_command = fill(self.spec.hardening.spec or (), values)
                    write_shipped_bundle(scratch, spec_command, probe, unfiltered=shipped.unfiltered)
                elif self.spec.bundle == "oci":
                    write_oci_bundle(scratch, claimed, probe, self.bundle_spec(values))
                else:
                    make_rootfs(scratch / "rootfs")
        except (OSError, SandboxError, subprocess.SubprocessError) as e:
            for step in reversed(cleanup):
                step()
            raise SandboxError(f"runtime {self.name}: cannot make its bundle: {e}") from None
        if self.spec.cleanup:  # the container the runtime makes by the id it is given: journaled by that id
            remover = fill(self.spec.cleanup, values)
            container = record.record("container", values["{id}"], cleanup=remover)
            cleanup.append(partial(remove_container, container, record))
        if self.spec.bundle == "oci":
            argv = fill(self.spec.command or (), values)  # the probe command is the bundle's process.args
        elif shipped is not None:
            declared = self.spec.hardening
            command = declared.unfiltered if shipped.unfiltered else declared.command
            argv = fill(command or (), values) + probe
        elif self.spec.matrix is not None:
            argv = fill(self.spec.matrix.argv(claimed), values) + probe
        else:
            argv = fill(self.spec.command or (), values) + probe
        return Launch(argv=argv, code=probe_code(), claimed=claimed, cleanup=cleanup, name=tag)

    def bundle_spec(self, values: dict[str, str]) -> BundleSpec:
        """What the profile's [oci] adds to the generated bundle, its placeholders filled."""
        oci = self.spec.oci
        if oci is None:
            return BundleSpec()
        mounts = tuple(
            {k: fill(v, values) if k == "options" else fill([v], values)[0] for k, v in entry.items()}
            for entry in oci.mounts
        )
        known = oci.capabilities if oci.features is None else features_capabilities(oci.features)
        return BundleSpec(
            known_capabilities=None if known is None else frozenset(known),
            mounts=mounts,
            rootfs_propagation=oci.rootfs_propagation,
        )

    @property
    def version(self) -> Callable[[], str] | None:
        """The profile's version command, run when the report asks (nsconform.report.hostfacts.runtime_version)."""
        command = self.spec.version
        return None if command is None else partial(command_output, list(command))


@cache
def features_capabilities(command: tuple[str, ...]) -> tuple[str, ...]:
    """The capabilities a runtime says it knows: `linux.capabilities` of its features JSON (`runc features`)."""
    try:
        listed = json.loads(command_output(list(command)))["linux"]["capabilities"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as e:
        raise SandboxError(f"cannot learn the runtime's capabilities from {' '.join(command)}: {e}") from None
    if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
        raise SandboxError(f"{' '.join(command)}: linux.capabilities is not a list of names")
    return tuple(listed)


def command_output(argv: list[str]) -> str:
    """What a runtime's informational command (version, features) prints; an error if it fails."""
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLEANUP_TIMEOUT, check=True, cwd="/"
    )
    return done.stdout.strip() or done.stderr.strip()


def fill(args: tuple[str, ...] | list[str], values: dict[str, str]) -> list[str]:
    """Replace the placeholders ({id}, {volume}, {bundle}, {rootfs}) in every argument."""
    filled = []
    for arg in args:
        for holder, value in values.items():
            arg = arg.replace(holder, value)
        filled.append(arg)
    return filled


def remove_container(entry: journal.Entry, record: journal.Journal) -> None:
    """A profile's cleanup command for the sandbox's container, and the empty cgroups named by its id."""
    clean_container(entry)
    record.removed(entry)


def always_isolated(runtime: Runtime) -> frozenset[str]:
    """Namespaces the runtime gives every sandbox, even where the combination shares them (rootless native: user)."""
    return frozenset(getattr(runtime, "always_isolates", ()))


def declared_hardening(runtime: Runtime) -> Hardening:
    """What the runtime promises beyond its namespaces (a profile's [hardening]); nothing for the native runtime."""
    return getattr(runtime, "hardening", None) or Hardening()


def attached(runtime: Runtime) -> dict | None:
    """The runtime's `attach` ({"pid", "claimed_from"}) when it joins a running process's namespaces, else None."""
    return getattr(runtime, "attach", None)
