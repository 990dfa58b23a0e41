"""The devices area, inside: the device nodes reachable, a read-only open of one, a mknod of a block device.

Only lstat, except open_device (O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC of one node the harness names, closed
at once, never of a class whose open acts) and mknod_block (a node made and removed in a scratch directory the
probe makes in the sandbox's own filesystem). `walk` also serves the sockets area (sent in sorted order).
"""

import os

try:  # imported by the harness; in a sandbox probe.py's names are already defined
    from nsconform.inside.probe import O_PATH, checked, errno_of, libc, op, read_text
except ImportError:
    pass

WALK_LIMIT = 4096  # entries a walk looks at, at most
WALK_DEPTH = 6
DEVICE_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Classes never opened, whatever the harness asks: their open acts. A watchdog starts counting down, snapshot
# prepares hibernation, a tty, console or pty may change line state; rtc is exclusive; a tape rewinds.
NEVER_OPENED = ("tty", "console", "vc", "vcs", "pts", "ptm", "ptmx", "watchdog", "snapshot", "rtc", "st", "ht")
NEVER_OPENED_MISC = {130: "watchdog", 231: "snapshot", 135: "rtc"}
TTY_MAJORS = (4, 5)
OPENAT2 = 437  # the syscall's number, one on every architecture
RESOLVE_NO_MAGICLINKS, RESOLVE_IN_ROOT = 0x02, 0x10


def open_in(top, path, flags):
    """Open `path` as if directory fd `top` were the root: openat2 with RESOLVE_IN_ROOT, so that no symbolic link
    (an absolute one read from /proc/PID/root would resolve against the harness's root) and no ".." leads out,
    and no magic link is followed. Where the kernel has no openat2 (before Linux 5.6, gVisor) only a walk of this
    process's own root goes on, by plain paths."""
    import ctypes

    how = (ctypes.c_uint64 * 3)(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = libc().syscall(OPENAT2, top, path.encode(), how, ctypes.c_size_t(ctypes.sizeof(how)))
    if fd == -1 and ctypes.get_errno() == 38 and os.path.samestat(os.fstat(top), os.stat("/")):  # ENOSYS
        return os.open(path, flags | os.O_CLOEXEC)
    return checked(fd, f"openat2 {path}")


def walk(roots, want, root="/", limit=WALK_LIMIT, depth=WALK_DEPTH):
    """lstat every entry under the directories `roots` (or the entry itself where one is no directory), seen from
    `root` (/proc/PID/root: another process's view, confined to it by open_in), never following a link, at most
    `limit` entries and `depth` levels; returns ([path, stat] of each whose mode `want` accepts, paths as seen
    from `root`; whether the walk was cut short)."""
    import stat

    found, visited = [], set()
    budget = [limit]

    def visit(path, st, opener, level):
        """Count and keep one entry; descend into it when it is a directory. False once the budget is spent."""
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if want(st.st_mode):
            found.append([path, st])
        if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in visited or level >= depth:
            return True
        visited.add((st.st_dev, st.st_ino))
        try:
            fd = opener(os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return True
        try:
            for name in sorted(os.listdir(fd)):
                try:
                    child = os.lstat(name, dir_fd=fd)  # one component: nothing to resolve, nothing to lead out
                except OSError:
                    continue

                def opener_of(flags, name=name, fd=fd):
                    return os.open(name, flags | os.O_CLOEXEC, dir_fd=fd)

                if not visit(path.rstrip("/") + "/" + name, child, opener_of, level + 1):
                    return False
        finally:
            os.close(fd)
        return True

    top = os.open(root, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for start in roots:
            try:
                fd = open_in(top, start, O_PATH | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)

            def opener_of(flags, start=start):
                return open_in(top, start, flags)

            if not visit(start, st, opener_of, 0):
                return found, True
    finally:
        os.close(top)
    return found, False


def device_classes(kind):
    """major -> driver name of the kernel's character (kind 'c') or block ('b') devices, from /proc/devices."""
    names, section = {}, None
    try:
        text = read_text("/proc/devices")
    except OSError:
        return names
    for line in text.splitlines():
        if line.startswith("Character"):
            section = "c"
        elif line.startswith("Block"):
            section = "b"
        elif line.strip() and section == kind:
            major, name = line.split(None, 1)
            names.setdefault(int(major), name.strip())
    return names


def device_class(kind, major, minor, classes=None):
    """A device's class: its driver's name from /proc/devices, with the minor for the mem and misc majors,
    whose minors are different devices ('mem/3' is /dev/null, 'misc/229' /dev/fuse); '' where unknown."""
    name = (classes if classes is not None else device_classes(kind)).get(major, "")
    if kind == "c" and name in ("mem", "misc"):
        return f"{name}/{minor}"
    return name


def never_opened(kind, major, minor, cls):
    """Whether a device is of a class this probe never opens (NEVER_OPENED), whatever it is asked."""
    if kind != "c":
        return False
    if cls.startswith("misc/"):
        return minor in NEVER_OPENED_MISC
    base = cls.rsplit("/", 1)[-1]
    return major in TTY_MAJORS or cls in NEVER_OPENED or base in NEVER_OPENED or base.startswith("tty")


@op
def device_nodes(roots=("/dev",), root="/", limit=WALK_LIMIT):
    """Every device node under `roots` (walk): [path, 'c' or 'b', major, minor, mode, uid, gid, class]; and
    whether the walk was cut short."""
    import stat

    found, cut = walk(roots, lambda mode: stat.S_ISCHR(mode) or stat.S_ISBLK(mode), root, limit)
    classes = {"c": device_classes("c"), "b": device_classes("b")}
    nodes = []
    for path, st in found:
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        cls = device_class(kind, major, minor, classes[kind])
        nodes.append([path, kind, major, minor, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, cls])
    return {"nodes": nodes, "cut_short": cut}


@op
def open_device(path, kind, major, minor):
    """Open device node `path`, which must still be the `kind` device major:minor, O_RDONLY|O_NONBLOCK|O_NOCTTY|
    O_CLOEXEC, and close it at once: 'ok' or the errno's name. Never a class of NEVER_OPENED (EPERM)."""
    import stat

    st = os.lstat(path)
    is_kind = stat.S_ISCHR(st.st_mode) if kind == "c" else stat.S_ISBLK(st.st_mode)
    if not is_kind or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (major, minor):
        raise OSError(116, f"{path} is no longer the {kind} device {major}:{minor}")  # ESTALE
    if never_opened(kind, major, minor, device_class(kind, major, minor)):
        raise OSError(1, f"the probe never opens {path}: opening a device of its class acts")
    return errno_of(lambda: os.close(os.open(path, DEVICE_OPEN | os.O_NOFOLLOW)))


@op
def mknod_block(directory, major, minor):
    """In a new directory under `directory`, mknod a block device major:minor (0600), open it as open_device
    does, then remove both: {"mknod": 'ok' or the errno's name, "open": the same, or None without a node}."""
    import stat
    import tempfile

    place = tempfile.mkdtemp(prefix="nsconform-mknod-", dir=directory)
    node = os.path.join(place, "block")
    try:
        made = errno_of(os.mknod, node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        opened = errno_of(lambda: os.close(os.open(node, DEVICE_OPEN | os.O_NOFOLLOW))) if made == "ok" else None
        return {"mknod": made, "open": opened}
    finally:
        if os.path.lexists(node):
            os.unlink(node)
        os.rmdir(place)
