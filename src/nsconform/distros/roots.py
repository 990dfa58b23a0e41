"""A Debian release's root filesystem for `nsconform --distros` (docs/distros.md): built once with `mmdebstrap
--mode=unshare` from Debian's archive, with the release's python3, the runtimes of the bundled profiles that
the release packages, udev (virtme-ng's script channel), nsconform's dependencies for that Python, and the
release's newest `linux-image-amd64` with its modules; cached, complete or absent.

A build happens in a directory beside the cache, journaled before it is made (nsconform.hygiene.journal), and
is renamed into place whole: a killed build leaves a directory that the next run's reaper removes, never one
that looks cached. Each run boots a hard-linked copy of the cached root (`linked`), also journaled, so that
what virtme-ng writes into its root (its init script) never reaches the cache. nsconform itself is never in
the cache: each run brings the running installation's code (`code`).

The host's apt configuration is only read (which Debian archives it uses, as for the kernels); mmdebstrap and
apt get the sources on their command line, and nothing is installed into the host system.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from packaging.requirements import Requirement

from nsconform.hygiene import journal, naming
from nsconform.kernels import debian, runner, vm
from nsconform.locations import PACKAGE

# The releases Debian's archive serves whose Python runs nsconform (bullseye's 3.9 cannot). Not sid: it has
# no -security suite, which the kernels' fetch always lists.
RELEASES = ("bookworm", "trixie", "forky")
RECORD = "built.json"
# The suite's own needs in the VM: its interpreter, the tools its VM script and checks use, and udev, through
# which virtme-ng's guest init finds its script ports.
BASE = ["python3", "mount", "util-linux", "iproute2", "procps", "kmod", "udev"]
# nsconform's dependencies (pyproject.toml) and the Debian packages that bring them.
DEPENDENCIES = {
    "pytest": "python3-pytest",
    "pytest-xdist": "python3-pytest-xdist",
    "pyroute2": "python3-pyroute2",
    "psutil": "python3-psutil",
}
# The bundled profiles' runtimes and the Debian packages that bring what their `requires` lists. docker is
# left out: its daemon is not started in the VMs (untested, with that reason).
RUNTIME_PACKAGES = {
    "unshare": ["util-linux", "uidmap"],
    "bwrap": ["bubblewrap"],
    "runc": ["runc"],
    "crun": ["crun"],
    "podman": ["podman", "runc"],
    "lxc": ["lxc"],
    "nspawn": ["systemd-container"],
    "firejail": ["firejail"],
    "runsc": ["runsc"],
}
NOT_IN_ROOTS = {"docker": "dockerd is not started in the distro VMs"}
# The suite's interpreter in the VM: the release's python3, on the code brought in (`code`), its bytecode
# compiled once into the VM's /tmp.
PYTHON = ["env", f"PYTHONPATH={vm.GUEST_IN}", "PYTHONPYCACHEPREFIX=/tmp/nsconform-pycache", "/usr/bin/python3"]


class BuildError(RuntimeError):
    """A release's root cannot be built here."""


@dataclass(frozen=True)
class Root:
    """A cached release root: its directory, its kernel and what the build recorded."""

    path: Path
    kernel: debian.Kernel
    record: dict

    def untested(self, runtime: str) -> str | None:
        """Why `runtime` (a bundled profile's name) cannot be tested in this root, or None."""
        if runtime in NOT_IN_ROOTS:
            return NOT_IN_ROOTS[runtime]
        missing = [p for p in RUNTIME_PACKAGES.get(runtime, []) if p in self.record["not_packaged"]]
        if missing:
            return f"Debian {self.record['release']} does not package {', '.join(missing)}"
        return None


def cache_dir() -> Path:
    """Where release roots are kept: beside the kernels' cache ($NSCONFORM_CACHE_DIR/distros, else
    /var/cache/nsconform/distros)."""
    return debian.cache_dir().parent / "distros"


def describe_releases() -> str:
    return ", ".join(RELEASES)


def sources(release: str) -> list[str]:
    """The release's sources, one line each, on the host's Debian archives (its main and security suites)."""
    return debian.sources_list(release).splitlines()


@contextlib.contextmanager
def journaled_dir(name: str) -> Iterator[Path]:
    """A directory of this run beside the cache, recorded in the journal before it is made and removed after
    the block (a later run's reaper removes it should this process be killed)."""
    record = journal.current()
    path = cache_dir() / f".{naming.unique(name)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with record.holding("path", str(path)) as entry:
        path.mkdir(mode=0o700)
    record.made_path(entry)
    try:
        yield path
    finally:
        if path.exists():
            shutil.rmtree(path)
        record.removed(entry)


def cached(release: str) -> Root | None:
    directory = cache_dir() / release
    try:
        record = json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return Root(directory / "root", debian.unpacked(directory / "root"), record)


def root(release: str, refresh: bool, say: Callable[[str], None]) -> Root:
    """The release's root from the cache, built first if it is not there (or if `refresh`)."""
    if release not in RELEASES:
        raise BuildError(f"unknown Debian release {release}: known are {describe_releases()}")
    found = None if refresh else cached(release)
    if found is not None:
        r = found.record
        built_for = sorted(entry["requirement"] for entry in r["dependencies"].values())
        if built_for == sorted(required()):
            kernel = f"{r['kernel']['package']} {r['kernel']['version']}"
            say(f"cached: Debian {release} root (built {r['built']}), {kernel}")
            return found
        say(f"the cached root was built for {', '.join(built_for)}, not nsconform's requirements now: building anew")
    if shutil.which("mmdebstrap") is None:
        raise BuildError("mmdebstrap is not installed: apt-get install mmdebstrap")
    with journaled_dir(f"build-{release}") as work:
        record = build(release, work, say)
        (work / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        target = cache_dir() / release
        if target.exists():  # --refresh: the old root goes once the new one is complete
            with journaled_dir(f"old-{release}") as old:
                target.rename(old / release)
                work.rename(target)
        else:
            try:
                work.rename(target)
            except OSError:  # another run built it meanwhile: keep theirs
                if cached(release) is None:
                    raise
    built = cached(release)
    if built is None:
        raise BuildError(f"{target}: the root just built cannot be read")
    return built


def run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, cwd=cwd)
    except FileNotFoundError:
        raise BuildError(f"{argv[0]} is not installed") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        tail = " / ".join(line for line in lines[-3:] if line)
        raise BuildError(f"{what} failed (exit {done.returncode}): {tail}")
    return done.stdout


def apt_options(apt_dir: Path) -> list[str]:
    """apt on the sources list, lists and cache that the kernel's download left in `apt_dir`
    (nsconform.kernels.debian.download), as that download runs it."""
    return [
        f"-oDir::Etc::sourcelist={apt_dir / 'sources.list'}",
        "-oDir::Etc::sourceparts=/dev/null",
        f"-oDir::State::Lists={apt_dir / 'lists'}",
        f"-oDir::Cache={apt_dir / 'cache'}",
        "-oAPT::Sandbox::User=root",
    ]


def packaged(release: str, apt_dir: Path, names: list[str]) -> list[str]:
    """Which of `names` the release packages, asked of apt's lists in `apt_dir`."""
    apt = ["apt-cache", *apt_options(apt_dir), "show", "--no-all-versions", *names]
    out = run(apt, f"apt-cache show ({release})") if names else ""
    return [name for name in names if re.search(rf"^Package: {re.escape(name)}$", out, re.MULTILINE)]


def kernel_parts(release: str, apt_dir: Path, package: str, say: Callable[[str], None]) -> list[str]:
    """Where `package` (the release's linux-image-<version>) holds no kernel, the packages it depends on that do,
    fetched and unpacked beside it: forky splits the kernel into linux-binary-<version> (the image, as
    /usr/lib/modules/<version>/vmlinuz), linux-modules-<version> and linux-base-<version> (config, System.map,
    modules.builtin); the image and config are linked into /boot as the other releases have them. Their names,
    for the record."""
    if list((apt_dir / "root" / "boot").glob("vmlinuz-*")):
        return []
    shown = run(["apt-cache", *apt_options(apt_dir), "show", "--no-all-versions", package], "apt-cache show")
    parts = sorted(set(re.findall(r"\b(linux-(?:base|binary|modules)-[^\s,()]+)", shown)))
    if not parts:
        raise BuildError(f"Debian {release}: {package} holds no kernel image and depends on no linux-binary package")
    say(f"downloading {', '.join(parts)} ({package} is split into them)")
    run(["apt-get", "-q", *apt_options(apt_dir), "download", *parts], "apt-get download", cwd=apt_dir)
    for part in parts:
        for deb in apt_dir.glob(f"{part}_*.deb"):
            run(["dpkg-deb", "-x", str(deb), str(apt_dir / "root")], f"dpkg-deb -x {deb.name}")
    (apt_dir / "root" / "boot").mkdir(exist_ok=True)
    for image in (apt_dir / "root" / "usr" / "lib" / "modules").glob("*/vmlinuz"):
        version = image.parent.name
        os.link(image, apt_dir / "root" / "boot" / f"vmlinuz-{version}")
        if (image.parent / "config").is_file():
            os.link(image.parent / "config", apt_dir / "root" / "boot" / f"config-{version}")
    return parts


def build(release: str, work: Path, say: Callable[[str], None]) -> dict:
    """Build the release's root in work/root, its kernel included; what was built, for the record."""
    # 1. The kernel, as --kernels fetches one: its .deb unpacked aside, with apt's lists for step 2.
    fetch = work / "kernel"
    fetch.mkdir()
    kernel_record = debian.download(release, fetch, say)
    parts = kernel_parts(release, fetch, kernel_record["package"], say)
    wanted = sorted({*BASE, *DEPENDENCIES.values(), *(p for ps in RUNTIME_PACKAGES.values() for p in ps)})
    # 2. Which of the runtimes' packages the release has (apt-cache show fails on none, so ask for all).
    have = set(packaged(release, fetch, wanted))
    missing = [p for p in wanted if p not in have]
    for name in missing:
        if name in BASE:
            raise BuildError(f"Debian {release} does not package {name}, which the suite needs")
    # 3. The root, with what the release has.
    say(f"building a Debian {release} root with mmdebstrap ({len(have)} packages and their dependencies)")
    started = datetime.now(UTC)
    run(
        [
            *runner.PIDNS,  # ended with this process, should it be killed
            "mmdebstrap",
            "--mode=unshare",
            "--variant=apt",
            "--quiet",
            f"--include={','.join(sorted(have))}",
            *host_apt_options(),
            release,
            str(work / "root"),
            *sources(release),
        ],
        f"mmdebstrap {release}",
    )
    # 4. The kernel into the root, where virtme-ng finds its modules (/lib/modules/<release> of the root).
    unpacked = debian.unpacked(fetch / "root")
    (work / "root" / "usr" / "lib" / "modules").mkdir(parents=True, exist_ok=True)
    unpacked.modules.joinpath(unpacked.release).rename(work / "root" / "usr" / "lib" / "modules" / unpacked.release)
    for path in (fetch / "root" / "boot").iterdir():
        path.rename(work / "root" / "boot" / path.name)
    run(["depmod", "-b", str(work / "root"), unpacked.release], "depmod")
    shutil.rmtree(fetch)
    # 5. nsconform's dependencies: the release's packages where their versions satisfy pyproject, else PyPI's.
    python = python_version(work / "root")
    dependencies = satisfy(work / "root", python, say)
    ended = datetime.now(UTC)
    took = (ended - started).total_seconds()
    say(f"built in {took:.0f} s")
    versions = installed(work / "root", sorted(have))
    return {
        "release": release,
        "sources": sources(release),
        "packages": versions,
        "not_packaged": missing,
        "python": python,
        "dependencies": dependencies,
        "kernel": {k: kernel_record[k] for k in ("package", "version", "sha256")}
        | {"release": unpacked.release, "parts": parts},
        "built": ended.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build_s": round(took, 1),
    }


def host_apt_options() -> list[str]:
    """The host's apt setting on whether an archive's Release may be past its Valid-Until, for mmdebstrap's apt
    (which reads a configuration of its own): a host whose apt takes an archive served from a snapshot or a
    proxy (Acquire::Check-Valid-Until "false") takes it for the releases' roots too, as for their kernels."""
    out = run(["apt-config", "dump", "Acquire::Check-Valid-Until"], "apt-config dump")
    return [f"--aptopt={line.strip()}" for line in out.splitlines() if line.startswith("Acquire::Check-Valid-Until ")]


def installed(root: Path, names: list[str]) -> dict[str, str]:
    """The version of each package installed in `root`, from its dpkg database."""
    out = run(
        ["dpkg-query", f"--admindir={root / 'var' / 'lib' / 'dpkg'}", "-W", "-f", "${Package} ${Version}\\n", *names],
        "dpkg-query",
    )
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def python_version(root: Path) -> str:
    """The X.Y of the root's python3 (its /usr/bin/python3 links to python3.Y)."""
    target = os.readlink(root / "usr" / "bin" / "python3")
    match = re.fullmatch(r"python(\d+\.\d+)", target)
    if match is None:
        raise BuildError(f"the root's /usr/bin/python3 links to {target!r}, not to a python3.Y")
    return match.group(1)


def versions(site: Path) -> dict[str, str]:
    """The distributions installed in `site` (a dist-packages directory) and their versions, by normalised name."""
    return {
        re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "").lower()): dist.version
        for dist in metadata.distributions(path=[str(site)])
    }


def required() -> list[str]:
    """nsconform's requirements as the installed distribution states them (pyproject.toml), extras' left out."""
    found = (Requirement(line) for line in metadata.requires("nsconform") or [])
    return [str(requirement) for requirement in found if requirement.marker is None]


def requirements(root: Path) -> dict[str, dict[str, str]]:
    """Each of nsconform's requirements (the installed distribution's, as pyproject.toml states them) against the
    Debian packages in `root`: the requirement, Debian's version, and where it comes from (debian or pypi)."""
    debian_versions = versions(root / "usr" / "lib" / "python3" / "dist-packages")
    found = {}
    for line in required():
        requirement = Requirement(line)
        have = debian_versions.get(requirement.name.lower())
        ok = have is not None and requirement.specifier.contains(have, prereleases=True)
        found[requirement.name.lower()] = {
            "requirement": str(requirement),
            "debian": have or "none",
            "from": "debian" if ok else "pypi",
        }
    return found


def satisfy(root: Path, python: str, say: Callable[[str], None]) -> dict[str, dict[str, str]]:
    """nsconform's requirements in the root: the release's packages where they satisfy them, else PyPI's, installed
    (pip, for the release's Python version) into the root's /usr/local, which that Python searches first."""
    found = requirements(root)
    short = [entry["requirement"] for entry in found.values() if entry["from"] == "pypi"]
    if short:
        say(f"from PyPI, as Debian's packages fall short: {', '.join(short)}")
        target = root / "usr" / "local" / "lib" / f"python{python}" / "dist-packages"
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
        pip += ["--target", str(target), "--python-version", python, "--only-binary=:all:", *short]
        run(pip, "pip install")
        pypi = versions(target)
        for name, entry in found.items():
            if entry["from"] == "pypi":
                entry["pypi"] = pypi.get(name, "?")
    return found


@contextlib.contextmanager
def linked(found: Root) -> Iterator[Path]:
    """A copy of the cached root made of hard links, for one run, journaled, removed afterwards: virtme-ng writes
    its init script into the root it boots, and the cache stays as built."""
    with journaled_dir("run") as scratch:
        copy = scratch / "root"
        run(["cp", "-al", str(found.path), str(copy)], "cp -al")
        yield copy


def code(into: Path) -> Path:
    """The running installation's nsconform, copied as an installed package into `into`/nsconform (its checks and
    fixtures included, wherever an editable install keeps them), without bytecode caches: the VM imports it
    read-only from there. Returns `into`, for PYTHONPATH."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(PACKAGE, into / "nsconform", ignore=ignore)
    for sub in ("fixtures", "isolation_checks"):
        if not (into / "nsconform" / sub).is_dir():
            spec = find_spec(f"nsconform.{sub}")
            if spec is None or not spec.submodule_search_locations:
                raise BuildError(f"nsconform.{sub} cannot be found in the running installation")
            shutil.copytree(next(iter(spec.submodule_search_locations)), into / "nsconform" / sub, ignore=ignore)
    return into
