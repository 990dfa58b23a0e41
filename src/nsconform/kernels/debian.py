"""Debian's kernels by series (`5.10`, `6.1`, `6.12`): fetched once from Debian's archive as the generic
amd64 flavour's .deb, unpacked with its modules into a cache directory, with a record of what was fetched.

The host's apt configuration is only read (which Debian archive it uses); the download uses a temporary
sources list and state directory of its own, and nothing is installed into the host system.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# A kernel series and the Debian release whose `linux-image-amd64` is that series. The generic amd64
# flavour: cloud-amd64 has no 9p, which virtme-ng shares the host's root with.
SERIES = {"5.10": "bullseye", "6.1": "bookworm", "6.12": "trixie"}
METAPACKAGE = "linux-image-amd64"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
RECORD = "fetched.json"


class FetchError(RuntimeError):
    """A Debian kernel could not be fetched or unpacked."""


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel: its image, its release, and the directory holding lib/modules/<release>."""

    image: Path
    release: str
    modules: Path  # the `.../lib/modules` directory (empty of <release> when the kernel has no modules)
    config: Path | None  # its .config (Debian's /boot/config-<release>), when known


def cache_dir() -> Path:
    """Where fetched kernels are kept: $NSCONFORM_CACHE_DIR/kernels, else /var/cache/nsconform/kernels."""
    return Path(os.environ.get("NSCONFORM_CACHE_DIR", "/var/cache/nsconform")) / "kernels"


def describe_series() -> str:
    return ", ".join(f"{s} ({release})" for s, release in SERIES.items())


def run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FetchError(f"{argv[0]} is not installed: fetching Debian kernels needs apt and dpkg") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise FetchError(f"{' '.join(argv[:2])} failed (exit {done.returncode}): {lines[-1] if lines else ''}")
    return done.stdout


def archives() -> list[tuple[str, str]]:
    """The host's Debian archives as apt is configured: (repository URI, suffix of its suites), e.g.
    the main archive with "" and the security archive with "-security"."""
    out = run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE) $(TARGET_OF)"])
    found: dict[str, str] = {}
    for line in out.splitlines():
        uri, release, target = [*line.split(), "", "", ""][:3]
        if target != "deb":
            continue
        suffix = re.sub(r"^[a-z]+", "", release)  # bookworm -> "", bookworm-security -> "-security"
        if suffix in ("", "-security"):
            found.setdefault(suffix, uri)
    if "" not in found:
        raise FetchError("apt has no Debian archive configured: Debian kernels cannot be fetched here")
    return [(uri, suffix) for suffix, uri in sorted(found.items())]


def sources_list(release: str) -> str:
    return "".join(f"deb [signed-by={KEYRING}] {uri} {release}{suffix} main\n" for uri, suffix in archives())


def field(pattern: str, text: str, what: str) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise FetchError(f"{what} is not in apt's answer")
    return match.group(1)


def unpacked(root: Path) -> Kernel:
    """The kernel in an unpacked linux-image .deb: boot/vmlinuz-<release>, modules in lib/modules or
    usr/lib/modules."""
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise FetchError(f"{root}: expected one boot/vmlinuz-*, found {len(images)}")
    release = images[0].name.removeprefix("vmlinuz-")
    for modules in (root / "lib" / "modules", root / "usr" / "lib" / "modules"):
        if (modules / release).is_dir():
            break
    else:
        raise FetchError(f"{root}: no lib/modules/{release}")
    config = root / "boot" / f"config-{release}"
    return Kernel(images[0], release, modules, config if config.is_file() else None)


def fetch(series: str, say: Callable[[str], None]) -> Kernel:
    """The series' kernel from the cache, fetched and unpacked first if it is not there."""
    directory = cache_dir() / series
    record = directory / RECORD
    if record.is_file():
        fetched = json.loads(record.read_text())
        say(f"cached: {fetched['package']} {fetched['version']} (fetched {fetched['fetched']})")
        return unpacked(directory / "root")
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".fetch-{series}-", dir=directory.parent))
    try:
        fetched = download(SERIES[series], work, say)
        kernel = unpacked(work / "root")
        # modules.dep and friends, which the .deb leaves to its postinst: the VM's modprobe needs them.
        run(["depmod", "-b", str(kernel.modules.parent.parent), kernel.release])
        for name in ("lists", "cache", "sources.list", fetched["filename"]):
            path = work / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        (work / RECORD).write_text(json.dumps({"series": series, **fetched}, indent=2) + "\n")
        try:
            work.rename(directory)
        except OSError:  # another run fetched it meanwhile: keep theirs
            if not record.is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work)
    return unpacked(directory / "root")


def download(release: str, work: Path, say: Callable[[str], None]) -> dict[str, str]:
    """apt-get download of the release's newest generic amd64 kernel into `work`, unpacked in work/root."""
    (work / "sources.list").write_text(sources_list(release))
    (work / "lists" / "partial").mkdir(parents=True)
    (work / "cache" / "archives" / "partial").mkdir(parents=True)
    apt = [
        f"-oDir::Etc::sourcelist={work / 'sources.list'}",
        "-oDir::Etc::sourceparts=/dev/null",
        f"-oDir::State::Lists={work / 'lists'}",
        f"-oDir::Cache={work / 'cache'}",
        "-oAPT::Sandbox::User=root",
    ]
    say(f"fetching Debian {release}'s package lists")
    run(["apt-get", "-q", *apt, "update"])
    depends = run(["apt-cache", *apt, "depends", METAPACKAGE])
    package = field(r"^\s+Depends: (linux-image-\S+)$", depends, f"Debian {release}: {METAPACKAGE}'s kernel")
    shown = run(["apt-cache", *apt, "show", "--no-all-versions", package])
    version = field(r"^Version: (\S+)$", shown, f"Debian {release}: {package}'s version")
    say(f"downloading {package} {version}")
    run(["apt-get", "-q", *apt, "download", package], cwd=work)
    debs = list(work.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise FetchError(f"apt-get download {package}: no .deb in {work}")
    run(["dpkg-deb", "-x", str(debs[0]), str(work / "root")])
    digest = hashlib.sha256(debs[0].read_bytes()).hexdigest()
    return {
        "release": release,
        "package": package,
        "version": version,
        "filename": debs[0].name,
        "size": str(debs[0].stat().st_size),
        "sha256": digest,
        "sources": sources_list(release).strip(),
        "fetched": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
