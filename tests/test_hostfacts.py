"""Host facts: read from this host, and parsed right from recorded texts."""

from __future__ import annotations

import gzip
import os
import platform
from pathlib import Path

import pytest

from nsconform.report import hostfacts

CONFIG = """\
CONFIG_NAMESPACES=y
CONFIG_UTS_NS=y
# CONFIG_TIME_NS is not set
CONFIG_USER_NS=y
CONFIG_NF_CONNTRACK_NETBIOS_NS=m
CONFIG_VETH=m
"""

V1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
V2 = "31 23 0:28 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
HYBRID = V1 + "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"


def test_host_facts_of_this_host() -> None:
    """The required keys first, as before; then the kernel, packages, config, sysctls and cgroup layout."""
    facts = hostfacts.host_facts()
    uname = os.uname()
    assert list(facts)[:5] == ["hostname", "kernel", "machine", "distro", "python"]
    assert (facts["hostname"], facts["kernel"], facts["machine"]) == (uname.nodename, uname.release, uname.machine)
    assert facts["python"] == platform.python_version() and facts["kernel_version"] == uname.version
    assert facts["packages"]["pytest"] == pytest.__version__ and facts["packages"]["nsconform"] != "not installed"
    assert set(hostfacts.PACKAGES) == set(facts["packages"])
    config = facts["kernel_config"]
    if config["source"] != hostfacts.UNAVAILABLE:
        assert set(hostfacts.KERNEL_OPTIONS) <= set(config) and config["CONFIG_NAMESPACES"] == "y"
    user_max = Path("/proc/sys/user/max_user_namespaces").read_text().strip()
    assert facts["sysctl"]["user.max_user_namespaces"] == user_max
    assert facts["cgroup"] in ("v1", "v2", "hybrid", "none")


def test_kernel_config_from_a_boot_file_or_a_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "config-6.1.0"
    plain.write_text(CONFIG)
    packed = tmp_path / "config.gz"
    packed.write_bytes(gzip.compress(CONFIG.encode()))
    for path in (packed, plain):
        monkeypatch.setattr(hostfacts, "CONFIG_SOURCES", (str(tmp_path / "nothing.gz"), str(path)))
        config = hostfacts.kernel_config("6.1.0")
        assert config["source"] == str(path)
        assert (config["CONFIG_UTS_NS"], config["CONFIG_TIME_NS"], config["CONFIG_VETH"]) == ("y", "n", "m")
        assert config["CONFIG_PID_NS"] == "n"  # absent from this config
        assert "CONFIG_NF_CONNTRACK_NETBIOS_NS" not in config


def test_kernel_config_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostfacts, "CONFIG_SOURCES", (str(tmp_path / "config.gz"), str(tmp_path / "config-{release}")))
    assert hostfacts.kernel_config("6.1.0") == {"source": "unavailable"}


@pytest.mark.parametrize(("mountinfo", "layout"), [(V1, "v1"), (V2, "v2"), (HYBRID, "hybrid"), ("", "none")])
def test_cgroup_layout(mountinfo: str, layout: str) -> None:
    assert hostfacts.cgroup_layout(mountinfo) == layout


def test_os_release_quoting() -> None:
    text = '# comment\nNAME="Debian GNU/Linux"\nPRETTY_NAME=\'Debian 12 (bookworm)\'\nID=debian\nBAD="unterminated\n'
    fields = hostfacts.parse_os_release(text)
    assert fields["NAME"] == "Debian GNU/Linux" and fields["ID"] == "debian" and "# comment" not in fields
    assert hostfacts.distro(fields) == "Debian 12 (bookworm)"
    assert hostfacts.distro({}) == "unknown"


class Versioned:
    def __init__(self, version: object) -> None:
        self.version = version


def failing() -> str:
    raise OSError(2, "No such file or directory: 'runc'")


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        (object(), None),
        (
            Versioned("crun version 1.8.1\ncommit: abc\nrundir: /run\nspec: 1.0.0\n+SYSTEMD"),
            "crun version 1.8.1\ncommit: abc\nrundir: /run",
        ),
        (Versioned(lambda: "runc version 1.1.5"), "runc version 1.1.5"),
        (Versioned(lambda: None), None),
        (Versioned(failing), "unavailable: FileNotFoundError: [Errno 2] No such file or directory: 'runc'"),
    ],
)
def test_runtime_version(runtime: object, expected: str | None) -> None:
    """A runtime's optional `version`: a string or a callable, at most 3 lines; a failure is reported."""
    assert hostfacts.runtime_version(runtime) == expected
