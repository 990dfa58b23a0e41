"""paths: what a masked path shows and whether a read-only path is writable, without writing anything.

A masked path is looked at with lstat, a directory listing, and a read of at most one byte (a read-only,
non-blocking open; never of a device other than /dev/null's). A read-only path is asked of the kernel:
statvfs's ST_RDONLY and access(W_OK) (faccessat), which checks write permission without opening.
"""

try:  # imported by the harness; in a sandbox probe.py's names are already defined
    from nsconform.inside.probe import errno_name, libc, op
except ImportError:
    pass

NULL_DEVICE = (1, 3)  # major, minor of /dev/null, which runtimes bind over a masked file


@op
def masked_views(paths):
    """Per path: {"exists": False} or its kind, its listing's size (a directory) or the bytes a one-byte read
    gives (a file: 0 or 1), or the errno that refused the look."""
    import os
    import stat

    found = {}
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError as e:
            found[path] = {"exists": False} if errno_name(e) == "ENOENT" else {"refused": errno_name(e)}
            continue
        seen = {"exists": True, "mode": oct(stat.S_IFMT(st.st_mode))}
        try:
            if stat.S_ISDIR(st.st_mode):
                seen["kind"], seen["entries"] = "dir", sorted(os.listdir(path))[:5]
                seen["count"] = len(os.listdir(path))
            elif stat.S_ISREG(st.st_mode) or (
                stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == NULL_DEVICE
            ):
                seen["kind"] = "file" if stat.S_ISREG(st.st_mode) else "null device"
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
                try:
                    seen["bytes"] = len(os.read(fd, 1))
                finally:
                    os.close(fd)
            else:
                seen["kind"] = "other"  # another device, a socket, a link: looked at, not opened
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    seen["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        except OSError as e:
            seen["refused"] = errno_name(e)
        found[path] = seen
    return found


MAX_LOOKED_AT = 400  # entries looked at under a directory for a file its mode lets its owner write


def owner_writable_file(top):
    """The first regular file under directory `top` (breadth first) whose mode lets its owner write, or None:
    a directory's own write access says little (/proc/sys's directories refuse W_OK even to root)."""
    import os
    import stat

    queue, looked = [top], 0
    while queue and looked < MAX_LOOKED_AT:
        directory = queue.pop(0)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            looked += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o200:
                return entry.path
            if stat.S_ISDIR(st.st_mode):
                queue.append(entry.path)
    return None


@op
def write_access(paths):
    """Per path: {"exists": False}, or its file system's read-only flag (statvfs ST_RDONLY) and what
    access(W_OK) says ("ok", "refused" or the errno) of the path itself, or for a directory of the first file
    under it whose mode lets its owner write (`through`): the kernel's answer to "may this process write
    here", without a write."""
    import errno
    import os
    import stat

    found = {}
    for path in paths:
        try:
            flags = os.statvfs(path).f_flag
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError as e:
            found[path] = {"exists": False} if errno_name(e) == "ENOENT" else {"refused": errno_name(e)}
            continue
        seen = {"exists": True, "read_only_fs": bool(flags & 1)}
        target = owner_writable_file(path) if is_dir else path
        if target is not None:
            seen["through"] = target
            import ctypes

            ret = libc().access(target.encode(), os.W_OK)
            seen["access_w"] = "ok" if ret == 0 else errno.errorcode.get(ctypes.get_errno(), "refused")
        found[path] = seen
    return found
