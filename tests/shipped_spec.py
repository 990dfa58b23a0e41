"""A runtime's `spec` command, then one deliberate weakening of the bundle it wrote: for the areas' controls.

    python3 tests/shipped_spec.py RUNTIME BUNDLE CHANGE

runs `RUNTIME spec --bundle BUNDLE` and applies CHANGE to BUNDLE/config.json (CHANGES below): a profile's
[hardening] spec in tests/test_areas.py, so that the sandbox is the runtime's own but for that one change.
Standard library only: the harness runs it with the host's python3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# A filter a sound profile declares: these syscalls refused with EPERM, every other allowed.
FILTERED = ("keyctl", "add_key", "request_key", "unshare", "bpf", "userfaultfd", "perf_event_open")
SECCOMP = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": list(FILTERED), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


def add_capability(config: dict[str, Any], name: str) -> None:
    for kind, held in config["process"]["capabilities"].items():
        if kind != "inheritable":
            held.append(name)


def change(config: dict[str, Any], what: str, caps: list[str]) -> None:
    linux = config["linux"]
    if what == "sound":
        return
    if what == "filter":
        linux["seccomp"] = SECCOMP
    elif what == "dac_read_search":
        add_capability(config, "CAP_DAC_READ_SEARCH")
    elif what == "unmasked":
        linux["maskedPaths"] = [p for p in linux["maskedPaths"] if p not in ("/proc/keys", "/proc/timer_list")]
    elif what == "proc_sys_writable":
        linux["readonlyPaths"] = [p for p in linux["readonlyPaths"] if p != "/proc/sys"]
    elif what == "privileged":  # what `docker run --privileged` changes: every capability, nothing masked or read-only
        config["process"]["capabilities"] = {kind: list(caps) for kind in ("bounding", "effective", "permitted")}
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
        linux.pop("seccomp", None)
    else:
        raise SystemExit(f"unknown change {what!r}")


def main() -> None:
    runtime, bundle, what, *caps = sys.argv[1:]
    subprocess.run([runtime, "spec", "--bundle", bundle], check=True)
    path = Path(bundle, "config.json")
    config = json.loads(path.read_text())
    change(config, what, caps)
    path.write_text(json.dumps(config, indent=1))


if __name__ == "__main__":
    main()
