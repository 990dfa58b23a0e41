"""Facts about the host a run was measured on."""

from __future__ import annotations

import os
import platform
from typing import Any


def distro() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def host_facts() -> dict[str, Any]:
    uname = os.uname()
    return {
        "hostname": uname.nodename,
        "kernel": uname.release,
        "machine": uname.machine,
        "distro": distro(),
        "python": platform.python_version(),
    }
