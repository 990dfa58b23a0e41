"""The code that runs inside a sandbox, and the one place that assembles what is sent there.

- probe.py: the observations and actions a check asks for, and the line-delimited JSON protocol;
- launcher.py: the native runtime, which builds the namespaces in the probe's own interpreter, then serves;
- joiner.py: `--nsc-attach`, which joins a running process's namespaces, then serves;
- areas/*.py: the probe's observations and harmless actions for the hardening areas (nsconform.areas), one
  module per area, sent with probe.py wherever it goes (their ops use its `op`, `libc`, `checked` ...).

They run in a bare interpreter (`/usr/bin/python3 -I -S`), standard library only, from source sent over
stdin: root inside a sandbox may map to a host uid that cannot read this package. `code` puts the
namespace table (nsconform.namespaces) in front of them, so that it is written once.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from nsconform.namespaces import CLONE_FLAGS, SETNS_ORDER
from nsconform.sandbox.errors import SandboxError

HERE = Path(__file__).parent
PARTS = ("probe", "launcher", "joiner")
# The area modules, in a fixed order, sent right after probe.py (their names resolve against its globals).
AREA_PARTS = tuple(sorted(path for path in (HERE / "areas").glob("*.py") if path.name != "__init__.py"))

# The probe command's code. From stdin: a header line "HEXVERSION MARSHAL_LEN SOURCE_LEN", the code
# compiled and marshalled by that interpreter version, then its source, compiled only where the
# interpreter inside is another version than the one that compiled it.
BOOTSTRAP = (
    "import sys,marshal;i=sys.stdin.buffer;h=i.readline().split();m=i.read(int(h[1]));s=i.read(int(h[2]));"
    "exec(marshal.loads(m) if int(h[0])==sys.hexversion else compile(s,'nsconform-probe','exec'))"
)
COMPILER = (
    "import sys,marshal;c=compile(sys.stdin.buffer.read(),'nsconform-probe','exec');"
    "sys.stdout.buffer.write(b'%d\\n'%sys.hexversion+marshal.dumps(c))"
)
INTERPRETERS = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")


@cache
def probe_interpreter() -> str:
    """A world-readable and world-executable python3, for a probe mapped to any host uid."""
    for path in INTERPRETERS:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & 0o005 == 0o005:
            return path
    raise SandboxError(f"no world-executable python3 among {', '.join(INTERPRETERS)} for the probe")


@cache
def payload(code: str) -> bytes:
    """What the bootstrap reads: `code` compiled by the probe's interpreter (saving its compile time
    in every sandbox), with the source as fallback."""
    done = subprocess.run(
        [probe_interpreter(), "-I", "-S", "-c", COMPILER],
        input=code.encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    version, _, marshalled = done.stdout.partition(b"\n")
    source_bytes = code.encode()
    return b"%s %d %d\n" % (version, len(marshalled), len(source_bytes)) + marshalled + source_bytes


def probe_command(tag: str) -> list[str]:
    """The command a runtime runs inside the sandbox; its code arrives over stdin."""
    return [probe_interpreter(), "-I", "-S", "-c", BOOTSTRAP, tag]


@cache
def code(*parts: str, main: str) -> str:
    """The source sent into a sandbox: the namespace table, the modules `parts` of this package in order,
    then the statement `main` that starts them (for example `serve()`)."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"no such in-sandbox module: {', '.join(sorted(unknown))}")
    table = f"NAMESPACES = {dict(CLONE_FLAGS)!r}\nSETNS_ORDER = {SETNS_ORDER!r}\n"
    files = [path for part in parts for path in (HERE / f"{part}.py", *(AREA_PARTS if part == "probe" else ()))]
    sources = [path.read_text() for path in files]
    return "\n".join([table, *sources, main]) + "\n"
