"""What nsconform accepts from its user: files read within a size limit, numbers finite and in range.

A profile, a baseline or a report to merge is a regular file no larger than its limit (docs/running.md);
a directory, a FIFO or a device is named as such, and a larger file is refused before it is read (a
50 MB profile would take gigabytes to check and render). The limits leave ample room: the largest
report the project has seen (256 combinations, 7,233 results) is some 10 MB.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

MiB = 1 << 20
PROFILE_BYTES = 1 * MiB
REPORT_BYTES = 64 * MiB  # a baseline, a report given to nsconform-merge
NAME_CHARS = 256  # a profile's `name`
PROBE_TIMEOUT_S = 3600.0  # the most --probe-timeout takes
KERNEL_TIMEOUT_S = 86400.0  # the most --kernel-timeout takes
KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class InputError(ValueError):
    """An input file or number nsconform refuses: the message says which and why."""


def file_kind(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of regular file `path`, at most `limit` of them; InputError naming `what` otherwise (opened
    without blocking, so that a FIFO is refused, not waited on)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise InputError(f"{what} {path}: cannot read it: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {path}: {file_kind(st.st_mode)}, not a file")
        if st.st_size > limit:
            raise InputError(f"{what} {path}: {st.st_size:,} bytes, more than the {limit // MiB} MiB it may have")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"{what} {path}: cannot read it: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while read
        raise InputError(f"{what} {path}: more than the {limit // MiB} MiB it may have")
    return data


def seconds(option: str, value: float | str, most: float) -> float:
    """`value` as a number of seconds in (0, most]; InputError naming `option` otherwise (nan, inf, 1e309,
    0, negative, too large)."""
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{option} needs a number of seconds, not {value!r}") from None
    if not (math.isfinite(number) and 0 < number <= most):
        raise InputError(f"{option} must be a number of seconds greater than 0 and at most {most:g}, not {value}")
    return number
