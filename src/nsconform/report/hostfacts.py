"""Facts about the host a run was measured on: what a reader needs to compare or reproduce a verdict.

The report's required keys (hostname, kernel, machine, distro, python) come first; then the kernel's version
string, the os-release ids, the versions of the harness's packages, the namespace-related kernel
config, the namespace sysctls and the cgroup layout. Every fact is read, never guessed: what cannot
be read is "unavailable".
"""

from __future__ import annotations

import glob
import gzip
import os
import platform
import shlex
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

UNAVAILABLE = "unavailable"
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
PACKAGES = ("nsconform", "pytest", "pytest-xdist", "pyroute2", "psutil")
# Kernel options behind the namespaces and what the checks exercise inside them (absent means n).
KERNEL_OPTIONS = (
    "CONFIG_NAMESPACES",
    "CONFIG_UTS_NS",
    "CONFIG_IPC_NS",
    "CONFIG_PID_NS",
    "CONFIG_NET_NS",
    "CONFIG_USER_NS",
    "CONFIG_TIME_NS",
    "CONFIG_CGROUPS",
    "CONFIG_SYSVIPC",
    "CONFIG_POSIX_MQUEUE",
    "CONFIG_VETH",
    "CONFIG_CHECKPOINT_RESTORE",
)
CONFIG_SOURCES = ("/proc/config.gz", "/boot/config-{release}")
# Sysctls that decide who may make namespaces; each is reported where the kernel has it.
SYSCTLS = ("kernel.unprivileged_userns_clone", "kernel.apparmor_restrict_unprivileged_userns")


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) lines as a dict, shell quoting undone."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value]
            fields[key.strip()] = " ".join(words)
    return fields


def os_release() -> dict[str, str]:
    """/etc/os-release (or /usr/lib/os-release) as a dict; empty when neither exists."""
    for path in OS_RELEASE:
        try:
            with open(path) as f:
                return parse_os_release(f.read())
        except OSError:
            continue
    return {}


def distro(release: dict[str, str] | None = None) -> str:
    fields = os_release() if release is None else release
    return fields.get("PRETTY_NAME") or fields.get("NAME") or "unknown"


def packages() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = package_version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def parse_kernel_config(text: str) -> dict[str, str]:
    """The KERNEL_OPTIONS' values in a kernel .config: y, m, a value, or n (not set or absent)."""
    values = dict.fromkeys(KERNEL_OPTIONS, "n")
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in values:
            values[name] = value.strip('"')
    return values


def kernel_config(release: str) -> dict[str, str]:
    """The namespace options of the running kernel's config, with where they were read."""
    for template in CONFIG_SOURCES:
        path = template.format(release=release)
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt", errors="replace") as f:
                    text = f.read()
            else:
                with open(path, errors="replace") as f:
                    text = f.read()
        except (OSError, EOFError):
            continue
        return {"source": path, **parse_kernel_config(text)}
    return {"source": UNAVAILABLE}


def read_sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def sysctls() -> dict[str, str]:
    """user.max_*_namespaces, and the userns sysctls this kernel has."""
    names = sorted("user." + os.path.basename(p) for p in glob.glob("/proc/sys/user/max_*_namespaces"))
    values = {name: read_sysctl(name) for name in (*names, *SYSCTLS)}
    return {name: value for name, value in values.items() if value is not None}


def cgroup_layout(mountinfo: str) -> str:
    """v1, v2 or hybrid (v1 hierarchies beside a cgroup2 mount), from a mountinfo text; none if neither."""
    types = {line.split(" - ", 1)[1].split()[0] for line in mountinfo.splitlines() if " - " in line}
    v1, v2 = "cgroup" in types, "cgroup2" in types
    if v1 and v2:
        return "hybrid"
    return "v1" if v1 else "v2" if v2 else "none"


def cgroup() -> str:
    try:
        with open("/proc/self/mountinfo") as f:
            return cgroup_layout(f.read())
    except OSError:
        return UNAVAILABLE


def runtime_version(runtime: Any) -> str | None:
    """The version the runtime reports, when it has an optional `version` attribute.

    A runtime (nsconform.runtimes.runtime.Runtime) may offer `version`: a string, or a callable returning one
    (typically running the profile's version command, e.g. `runc --version`). It is reported as
    given, on at most 3 lines; a callable that fails is reported as unavailable with the reason.
    """
    value = getattr(runtime, "version", None)
    if value is None:
        return None
    if callable(value):
        try:
            value = value()
        except Exception as e:  # a version command failing must not lose the report
            return f"{UNAVAILABLE}: {type(e).__name__}: {e}"[:300]
    if value is None:
        return None
    return "\n".join(str(value).strip().splitlines()[:3])[:300]


def host_facts() -> dict[str, Any]:
    uname = os.uname()
    release = os_release()
    return {
        "hostname": uname.nodename,
        "kernel": uname.release,
        "machine": uname.machine,
        "distro": distro(release),
        "python": platform.python_version(),
        "kernel_version": uname.version,
        "os_release": {key: release[key] for key in ("ID", "VERSION_ID", "VERSION_CODENAME") if key in release},
        "packages": packages(),
        "kernel_config": kernel_config(uname.release),
        "sysctl": sysctls(),
        "cgroup": cgroup(),
    }


def fact_rows(facts: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Facts flattened for a table: ('packages.pytest', '9.2.0'), ..."""
    rows = []
    for key, value in facts.items():
        if isinstance(value, dict):
            rows += fact_rows(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            rows.append((f"{prefix}{key}", ", ".join(map(str, value))))
        else:
            rows.append((f"{prefix}{key}", "-" if value is None else str(value)))
    return rows
