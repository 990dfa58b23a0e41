"""install.sh is complete for a fresh Debian machine: every external program the project runs (the bundled
profiles' commands, the tests' tools, what `--kernels` and virtme-ng need) comes from a Debian package that
install.sh names, or from one Debian always has (Essential, or of priority required). A program here
only because another package brought it (udev, once) is caught on the developer's machine, not a user's."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest

from nsconform.locations import PACKAGE
from tests.conftest import ROOT

# Every program the project runs, and who runs it. A program named in the code (a bundled profile, an
# argv literal) that is missing here fails test_every_program_the_code_names_is_listed.
PROGRAMS = {
    "sh": "the docker profile's wrapper; runtime profiles of the tests",
    "bash": "install.sh; tests/test_docs.py runs the docs' command blocks",
    "tar": "the docker profile imports its root directory",
    "hostname": "the tests' runtime profiles",
    "sleep": "the tests' live workloads (--nsc-attach)",
    "env": "a test profile's command",
    "touch": "a test container's cleanup command",
    "swapoff": "a probe op's syscall with arguments the kernel rejects",
    "unshare": "the unshare profile; --kernels runs each VM in a PID namespace of its own",
    "nsenter": "the --nsc-attach tests look inside their target",
    "setpriv": "the rootless tests and docs/running.md's rootless command",
    "newuidmap": "the unshare profile maps root of its user namespace",
    "newgidmap": "the unshare profile maps root of its user namespace",
    "ip": "the tests' veth pairs and lookalike links",
    "bwrap": "the bwrap profile",
    "runc": "the runc and podman profiles, dockerd's runtime",
    "crun": "the crun profile",
    "podman": "the podman profile",
    "docker": "the docker profile",
    "dockerd": "the docker tests start a daemon of their own",
    "lxc-execute": "the lxc profile",
    "systemd-nspawn": "the nspawn profile",
    "firejail": "the firejail profile",
    "runsc": "the runsc (gVisor) profile",
    "chromium": "the HTML report's tests render conformance.html",
    f"qemu-system-{platform.machine()}": "--kernels: virtme-ng's QEMU",
    "busybox": "--kernels: virtme-ng's initramfs",
    "depmod": "--kernels: a Debian kernel's module index",
    "file": "--kernels: virtme-ng reads a kernel image's version",
    "apt-get": "--kernels: fetches a Debian kernel package",
    "apt-cache": "--kernels: finds a Debian kernel package",
    "dpkg-deb": "--kernels: unpacks a Debian kernel package",
    "mmdebstrap": "--distros: a Debian release's root filesystem",
    "apt-config": "--distros: the host's apt setting on Release files past their Valid-Until",
    "dpkg-query": "--distros: the versions of the packages in a release's root",
    "cp": "--distros: the hard-linked copy of a cached root that a run boots",
    "git": "the tests list the checkout's tracked files",
}
# Files the project needs that are no program on PATH.
FILES = {
    "systemd-udevd": (
        ("/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd"),
        "--kernels: virtme-ng's guest init finds its script ports through udev on the host's root",
    ),
}
NOT_DEBIAN = {"pytest", "vng"}  # installed by pip into .venv (pyproject.toml)
# Words of such literals that name a program on PATH but are none the project runs (a key, a label, a
# shell builtin, a Debian package that --distros puts in a release's root) or one every Debian has and the
# tests' data only names.
WORDS = {
    "command",
    "dir",
    "dirs",
    "echo",
    "set",
    "time",
    "true",
    "link",
    "id",
    "rm",
    "mount",
    "mknod",
    "tty",
    "python3",
}
BIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
ARGV_LITERAL = re.compile(r"[\[(]\s*\"([a-z][\w.+-]*)\",")


def named_packages() -> set[str]:
    """DEBIAN_PACKAGES of install.sh, comments dropped."""
    text = (ROOT / "install.sh").read_text()
    block = re.search(r"^DEBIAN_PACKAGES=\((.*?)^\)", text, re.M | re.S)
    assert block, "install.sh has no DEBIAN_PACKAGES=( ... ) block"
    return {word for line in block.group(1).splitlines() for word in line.split("#", 1)[0].split()}


@cache
def essential(package: str) -> bool:
    """Whether every Debian system has `package`: Essential, or of priority required (debootstrap's minbase)."""
    shown = subprocess.run(["dpkg-query", "-W", "-f=${Essential} ${Priority}", package], capture_output=True, text=True)
    return shown.stdout.split() in (["yes", "required"], ["no", "required"], ["yes"], ["yes", "important"])


def owner(paths: list[str]) -> str | None:
    """The Debian package that ships one of `paths` (each as written and as resolved: /usr is merged)."""
    for path in paths:
        if not Path(path).exists():
            continue
        for candidate in dict.fromkeys([path, str(Path(path).resolve())]):
            found = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
            for line in found.stdout.splitlines() if found.returncode == 0 else []:
                if not line.startswith("diversion by "):
                    return line.split(":", 1)[0].split(",")[0].strip()
    return None


def accounted(package: str, named: set[str]) -> bool:
    return package in named or essential(package)


def profile_programs() -> set[str]:
    """The programs the bundled profiles run: their `requires`, and the first word of every command."""
    names: set[str] = set()
    for path in (PACKAGE / "runtimes" / "bundled").glob("*.toml"):
        data = tomllib.loads(path.read_text())
        names.update(data.get("requires", []))
        for argv in (
            data.get("command"),
            data.get("cleanup"),
            data.get("version"),
            data.get("matrix", {}).get("prefix"),
        ):
            if argv:
                names.add(argv[0])
    return names


def literal_programs() -> set[str]:
    """The first string of a list or call literal in the project's Python that names a program on PATH."""
    names: set[str] = set()
    for folder in ("src", "tests", "bench", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == Path(__file__):
                continue  # this file's own argv literals: dpkg-query, run by the test itself
            names.update(m for m in ARGV_LITERAL.findall(path.read_text()) if shutil.which(m))
    return names


def test_every_program_the_code_names_is_listed() -> None:
    named = profile_programs() | literal_programs()
    unlisted = named - set(PROGRAMS) - NOT_DEBIAN - WORDS
    assert not unlisted, f"add to PROGRAMS (and its package to install.sh): {sorted(unlisted)}"


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_each_program_comes_from_a_package_install_sh_names(program: str) -> None:
    package = owner([f"{directory}/{program}" for directory in BIN])
    assert package is not None, f"{program} ({PROGRAMS[program]}): no Debian package installed here ships it"
    assert accounted(package, named_packages()), (
        f"{program} ({PROGRAMS[program]}) comes from {package}, which install.sh's DEBIAN_PACKAGES does not name"
    )


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_file_comes_from_a_package_install_sh_names(name: str) -> None:
    paths, why = FILES[name]
    package = owner(list(paths))
    assert package is not None, f"{name} ({why}): no Debian package installed here ships {' or '.join(paths)}"
    assert accounted(package, named_packages()), f"{name} ({why}) comes from {package}"


def test_a_package_missing_from_install_sh_is_caught() -> None:
    """The check has teeth: without udev in DEBIAN_PACKAGES (a fresh machine's trouble once), the file it
    gives is unaccounted for, although it is installed here."""
    package = owner(list(FILES["systemd-udevd"][0]))
    assert package == "udev"
    assert accounted(package, named_packages())
    assert not accounted(package, named_packages() - {"udev"})
