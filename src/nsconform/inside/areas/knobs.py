"""The knobs area, inside: what the kernel says of a knob file, never opened for writing (stat, statfs,
statvfs, and faccessat(W_OK, AT_EACCESS): the kernel's permission and read-only checks without an open)."""

import os

try:  # imported by the harness; in a sandbox probe.py's and devices.py's names are already defined
    from nsconform.inside.areas.devices import open_in
    from nsconform.inside.probe import O_PATH, checked, errno_name, errno_of, fs_name, libc, op
except ImportError:
    pass

AT_FDCWD, AT_EACCESS, W_OK = -100, 0x200, 2


@op
def knob_facts(paths, root="/"):
    """Per path, as seen from `root` (/proc/PID/root: another process's view, confined to it by open_in): whether
    it exists, its filesystem, mode and owner, whether its mount or filesystem is read-only, and (seen from this
    process's own root only) what faccessat(W_OK, AT_EACCESS) answers this process."""
    facts = {}
    top = os.open(root, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in paths:
            try:
                fd = open_in(top, path, O_PATH)
            except OSError as e:
                facts[path] = {"exists": False, "stat": errno_name(e)}
                continue
            try:
                st = os.fstat(fd)
                facts[path] = {
                    "exists": True,
                    "fs": fs_name(fd),
                    "mode": st.st_mode & 0o7777,
                    "uid": st.st_uid,
                    "gid": st.st_gid,
                    "read_only": bool(os.fstatvfs(fd).f_flag & 1),  # ST_RDONLY: the mount's or the superblock's
                }
            finally:
                os.close(fd)
            if root == "/":
                facts[path]["access_w"] = errno_of(access_w, path)
    finally:
        os.close(top)
    return facts


def access_w(path):
    """faccessat(path, W_OK, AT_EACCESS): checked with the effective ids, as a write would be (the kernel's
    faccessat2 since Linux 5.8; the C library emulates the flag on older kernels)."""
    checked(libc().faccessat(AT_FDCWD, path.encode(), W_OK, AT_EACCESS), f"faccessat {path}")
