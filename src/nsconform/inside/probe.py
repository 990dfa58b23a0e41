"""The probe: what runs inside a sandbox and reports what it sees and what it can do.

Standard library only, no side effect on import, cheap to start: the harness sends this
source over stdin to a world-readable interpreter (`/usr/bin/python3 -I -S`), because root
inside a user namespace may map to a host uid that cannot read the checkout or the venv.
The harness also imports it to take the same observations on the host side.

Protocol, line-delimited JSON: the probe first writes `{"hello": {...}}`, then answers
each request `{"op": NAME, "args": {...}}` with `{"ok": true, "result": ...}` or
`{"ok": false, "errno": N, "error": TEXT}`. End of input or `{"op": "exit"}` ends it.
"""

import os
import sys

try:  # imported by the harness; sent into a sandbox, nsconform.inside.code writes this table in front
    from nsconform.namespaces import CLONE_FLAGS as NAMESPACES
except ImportError:
    pass
OPS = {}
_libc = None
_codec = None


def op(fn):
    """Register `fn` as a request the harness may send."""
    OPS[fn.__name__] = fn
    return fn


def libc():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def codec():
    """JSON encoder and decoder, imported on first use (the fork server imports it once for all its sandboxes)."""
    global _codec
    if _codec is None:
        import json

        _codec = (json.dumps, json.loads)
    return _codec


def dumps(value):
    return codec()[0](value)


def loads(text):
    return codec()[1](text)


def checked(ret, what):
    """Turn a libc -1 return into OSError with the errno."""
    if ret == -1:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def read_text(path):
    with open(path) as f:
        return f.read()


MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE, MS_SHARED = 0x1000, 0x4000, 0x40000, 0x100000
MNT_DETACH = 2


def mount(source, target, fstype, flags, data=None):
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    checked(libc().mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {fstype} on {target}")


# -- observations -------------------------------------------------------------------------


@op
def ns_inodes(pid="self"):
    """(device, inode) of every namespace of process `pid` that the kernel has."""
    found = {}
    for ns in NAMESPACES:
        try:
            st = os.stat(f"/proc/{pid}/ns/{ns}")
        except OSError:
            continue
        found[ns] = [st.st_dev, st.st_ino]
    return found


STATUS_FACTS = {"CapEff:": "cap_eff", "CapBnd:": "cap_bnd", "Seccomp:": "seccomp", "NoNewPrivs:": "no_new_privs"}
READ_ONLY_CANDIDATES = ("/", "/usr", "/etc", "/proc/sys", "/sys", "/tmp")


@op
def identity():
    """Who and where the probe is: pids as seen here and in every ancestor pid namespace."""
    return status_facts()[0]


def status_facts():
    """(identity, hardening): who the probe is, and what confines it beyond its namespaces (capability sets,
    seccomp mode, no_new_privs, read-only file systems), from one read of /proc/self/status. A kernel of
    the sandbox's own (gVisor) may lack some lines: those facts are left out, never guessed."""
    nspid = []
    hardening = {}
    for line in read_text("/proc/self/status").splitlines():
        if line.startswith("NSpid:"):
            nspid = [int(x) for x in line.split()[1:]]
        key = line.split(None, 1)[0] if line else ""
        if key in STATUS_FACTS:
            hardening[STATUS_FACTS[key]] = line.split()[1]
    read_only = []
    for path in READ_ONLY_CANDIDATES:
        try:
            if os.statvfs(path).f_flag & 1:  # ST_RDONLY
                read_only.append(path)
        except OSError:
            continue
    hardening["read_only"] = read_only
    ident = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "nspid": nspid,
        "proc_self": os.readlink("/proc/self"),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
    }
    return ident, hardening


@op
def uts():
    return {"hostname": os.uname().nodename, "domainname": domainname()}


def domainname():
    """The NIS domain name: from /proc, else (a kernel of the sandbox's own may not have that file) from libc."""
    try:
        return read_text("/proc/sys/kernel/domainname").strip()
    except FileNotFoundError:
        import ctypes

        buf = ctypes.create_string_buffer(65)
        checked(libc().getdomainname(buf, 65), "getdomainname")
        return buf.value.decode(errors="replace")


@op
def kernel():
    """Which kernel answers: its release and version string, which no namespace changes (a sandbox with a kernel
    of its own, gVisor or a VM, answers otherwise than the host), and the boot id (None where there is none)."""
    uname = os.uname()
    try:
        boot_id = read_text("/proc/sys/kernel/random/boot_id").strip()
    except OSError:
        boot_id = None
    return {"release": uname.release, "version": uname.version, "boot_id": boot_id}


@op
def pids():
    """The pids that /proc lists."""
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


@op
def signal(pid, sig=0):
    """kill(pid, sig) for sig 0 (existence) only: 0 on success, else the errno."""
    if sig != 0:
        raise OSError(22, "the probe only sends signal 0 to others")
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno
    return 0


@op
def sysvipc():
    """SysV IPC objects visible here, per kind: [key, id] pairs."""
    found = {}
    for kind in ("shm", "sem", "msg"):
        rows = read_text("/proc/sysvipc/" + kind).splitlines()[1:]
        found[kind] = sorted([int(r.split()[0]) & 0xFFFFFFFF, int(r.split()[1])] for r in rows)  # key_t: printed signed
    return found


@op
def dev_shm():
    return sorted(os.listdir("/dev/shm"))


@op
def mountinfo():
    """[mount id, parent id, mount point, fs type, source, propagation tags] per mount."""
    table = []
    for line in read_text("/proc/self/mountinfo").splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        fstype, source = tail.split()[:2]
        table.append([int(fields[0]), int(fields[1]), unescape(fields[4]), fstype, source, fields[6:]])
    return table


def unescape(path):
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


@op
def file_stat(path):
    """Who owns `path` and on which device it is, as seen here (lstat: a link is not followed)."""
    st = os.lstat(path)
    return {"dev": st.st_dev, "ino": st.st_ino, "mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}


@op
def read_file(path, limit=256):
    """The first `limit` bytes of file `path`, as text."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


@op
def id_maps():
    maps = {}
    for name in ("uid_map", "gid_map"):
        maps[name] = [[int(x) for x in line.split()] for line in read_text("/proc/self/" + name).splitlines()]
    try:
        maps["setgroups"] = read_text("/proc/self/setgroups").strip()
    except FileNotFoundError:  # a kernel of the sandbox's own may not have it
        maps["setgroups"] = None
    return maps


@op
def host_privileged():
    """Try two harmless operations the kernel allows only with a capability in the initial user namespace:
    swapoff of a path that does not exist (CAP_SYS_ADMIN) and init_module of nothing (CAP_SYS_MODULE).
    Returns each one's errno: EPERM where the capability is missing, ENOENT or EFAULT where it is held."""
    c = libc()
    found = {}
    for name, call in (
        ("swapoff", lambda: c.swapoff(b"/nonexistent-nsconform-swap")),
        ("init_module", lambda: c.init_module(None, 0, b"")),
    ):
        try:
            checked(call(), name)
            found[name] = 0
        except OSError as e:
            found[name] = e.errno
    return found


# -- actions inside the sandbox -------------------------------------------------------------


@op
def set_uts(hostname=None, domainname=None):
    """Set the hostname and/or domainname; returns the values before, to restore them."""
    before = uts()
    for value, call in ((hostname, "sethostname"), (domainname, "setdomainname")):
        if value is not None:
            raw = value.encode()
            checked(getattr(libc(), call)(raw, len(raw)), call)
    return before


@op
def mount_tmpfs(target, source):
    """Mount a small tmpfs named `source` (its mountinfo source field) on directory `target`."""
    mount(source, target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755")


@op
def unmount(target, detach=False):
    raw = target.encode()
    checked(libc().umount2(raw, MNT_DETACH if detach else 0), f"umount {target}")


@op
def create_file(path):
    """Create file `path` exclusively (0600); returns its owner as seen here."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    return file_stat(path)


@op
def ipc_create(kind, key):
    """Create a SysV object of `kind` (shm, sem, msg) with `key`, exclusively; returns its id."""
    mode = 0o1000 | 0o2000 | 0o600  # IPC_CREAT | IPC_EXCL | rw for the owner
    c = libc()
    if kind == "shm":
        return checked(c.shmget(key, 4096, mode), "shmget")
    if kind == "sem":
        return checked(c.semget(key, 1, mode), "semget")
    if kind == "msg":
        return checked(c.msgget(key, mode), "msgget")
    raise OSError(22, f"unknown IPC kind {kind!r}")


@op
def ipc_lookup(kind, key):
    """The id of the SysV object of `kind` with `key` as this IPC namespace knows it, or None (ENOENT).

    Asked of the kernel by key, as a program would (shmget, semget, msgget without IPC_CREAT), not read from
    /proc/sysvipc, which a kernel of the sandbox's own may not have."""
    c = libc()
    try:
        if kind == "shm":
            return checked(c.shmget(key, 0, 0), "shmget")
        if kind == "sem":
            return checked(c.semget(key, 0, 0), "semget")
        if kind == "msg":
            return checked(c.msgget(key, 0), "msgget")
    except FileNotFoundError:
        return None
    raise OSError(22, f"unknown IPC kind {kind!r}")


@op
def ipc_remove(kind, ident):
    c = libc()
    if kind == "shm":
        return checked(c.shmctl(ident, 0, None), "shmctl")  # IPC_RMID
    if kind == "sem":
        return checked(c.semctl(ident, 0, 0), "semctl")
    return checked(c.msgctl(ident, 0, None), "msgctl")


@op
def mq_create(name):
    """Create POSIX message queue `name` exclusively (it exists until mq_remove)."""
    c = libc()
    fd = checked(c.mq_open(name.encode(), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, None), "mq_open")
    os.close(fd)


@op
def mq_exists(name):
    try:
        os.close(checked(libc().mq_open(name.encode(), os.O_RDONLY), "mq_open"))
    except FileNotFoundError:
        return False
    return True


@op
def mq_remove(name):
    checked(libc().mq_unlink(name.encode()), "mq_unlink")


@op
def shm_create(name):
    """Create a POSIX shared-memory object, i.e. a file in /dev/shm, exclusively."""
    os.close(os.open("/dev/shm/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))


@op
def shm_remove(name):
    os.unlink("/dev/shm/" + name)


def _forked(child):
    """Run `child()` in a forked process that reports one JSON value back over a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            value = child()
        except BaseException as e:  # report, never run the parent's code in the child
            value = {"error": repr(e)}
        os.write(w, dumps(value).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return loads(data.decode() or "null")


@op
def orphan_parent():
    """Orphan a grandchild (its parent exits first) and report the parent it was given."""
    report_r, report_w = os.pipe()
    gate_r, gate_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(report_r)
        os.close(gate_w)
        if os.fork() == 0:  # the orphan-to-be
            os.read(gate_r, 1)  # end of file once the probe has seen its parent exit
            os.write(report_w, dumps({"pid": os.getpid(), "ppid": os.getppid()}).encode())
            os._exit(0)
        os._exit(0)
    os.close(report_w)
    os.close(gate_r)
    os.waitpid(middle, 0)
    os.close(gate_w)
    data = os.read(report_r, 4096)
    os.close(report_r)
    seen = loads(data.decode())
    try:  # reap it if it became ours, as it must when this probe is the namespace's init
        os.waitpid(seen["pid"], 0)
        seen["reaped_by_probe"] = True
    except ChildProcessError:
        seen["reaped_by_probe"] = False
    return seen


@op
def kill_init_from_inside():
    """From a child, send SIGKILL to pid 1 (which must be this probe); report the kill's result."""
    if os.getpid() != 1:
        raise OSError(1, "refused: this probe is not pid 1, so pid 1 is not ours to kill")

    def child():
        try:
            os.kill(1, 9)
        except OSError as e:
            return e.errno
        return 0

    return {"kill_errno": _forked(child), "probe_pid": os.getpid()}


@op
def drop_groups():
    """In a forked child (the probe keeps its groups): setgroups([]). 0 on success, else the errno."""

    def child():
        try:
            os.setgroups([])
        except OSError as e:
            return e.errno
        return 0

    return _forked(child)


@op
def spawn_sleepers(count=2):
    """Start `count` children that block forever; returns their pids as seen here."""
    started = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            import signal as _signal

            while True:
                _signal.pause()
        started.append(pid)
    return started


# -- network, cgroup and time ---------------------------------------------------------------------

SIOCGIFHWADDR = 0x8927


@op
def links():
    """[ifindex, name, hardware address] of every link of this network namespace.

    Asked of the kernel (if_nameindex, SIOCGIFHWADDR), not read from /sys/class/net, which shows
    the network namespace of whoever mounted that sysfs.
    """
    import _socket
    import fcntl

    found = []
    with Socket(_socket.AF_INET, _socket.SOCK_DGRAM) as sock:
        for index, name in _socket.if_nameindex():
            try:
                ifreq = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, name.encode().ljust(40, b"\0"))
                address = ifreq[18:24].hex(":")
            except OSError:  # a link that vanished in between, or one without a hardware address
                address = ""
            found.append([index, name, address])
    return sorted(found)


class Socket:
    """A socket of the C module, closed when the with block ends: `import socket` would cost every
    sandbox's probe ~7 ms (it pulls in enum and selectors)."""

    def __init__(self, family, kind):
        import _socket

        self.sock = _socket.socket(family, kind)

    def __enter__(self):
        return self.sock

    def __exit__(self, *exc):
        self.sock.close()


def socket_address(address, port=None):
    """(family, address) of a stream socket: TCP/IPv4 `address`:`port`, or with no port a unix
    socket at path `address`, in the abstract namespace when it starts with '@'."""
    import _socket

    if port is None:
        return _socket.AF_UNIX, ("\0" + address[1:] if address.startswith("@") else address)
    return _socket.AF_INET, (address, port)


def read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@op
def tcp_bind(address, port):
    """Bind a TCP socket to `address`:`port` and listen, then close it: whether the port is free here."""
    import _socket

    with Socket(_socket.AF_INET, _socket.SOCK_STREAM) as sock:
        sock.bind((address, port))
        sock.listen(1)
        return list(sock.getsockname())


@op
def connect(address, port=None, send="", timeout=5.0):
    """Connect a stream socket (see socket_address), send `send`, end writing; return the reply.

    A timeout is ETIMEDOUT, so that the harness gets an errno for every way of not getting through.
    """
    import _socket

    family, target = socket_address(address, port)
    with Socket(family, _socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(target)
            sock.sendall(send.encode())
            sock.shutdown(_socket.SHUT_WR)
            return read_all(sock).decode(errors="replace")
        except TimeoutError:
            raise OSError(110, f"no answer within {timeout:g} s") from None  # ETIMEDOUT


def sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


@op
def sysctl(name):
    """A sysctl's value as this process sees it (net.* ones: of its network namespace)."""
    return read_text(sysctl_path(name)).strip()


@op
def set_sysctl(name, value):
    """Write a sysctl; returns its value before, to restore it."""
    before = sysctl(name)
    with open(sysctl_path(name), "w") as f:
        f.write(value)
    return before


@op
def cgroups(pid="self"):
    """[hierarchy id, controllers, path] per line of /proc/PID/cgroup, paths relative to the reader's
    cgroup namespace root."""
    rows = []
    for line in read_text(f"/proc/{pid}/cgroup").splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        rows.append([int(hierarchy), controllers, path])
    return rows


@op
def clocks():
    """CLOCK_MONOTONIC and CLOCK_BOOTTIME here, in nanoseconds (a time namespace offsets both)."""
    import time

    return {
        "monotonic": time.clock_gettime_ns(time.CLOCK_MONOTONIC),
        "boottime": time.clock_gettime_ns(time.CLOCK_BOOTTIME),
    }


@op
def timens_offsets():
    """Per clock, the offset in nanoseconds of this process's time namespace over the initial one."""
    offsets = {}
    for line in read_text("/proc/self/timens_offsets").splitlines():
        clock, seconds, nanoseconds = line.split()
        offsets[clock] = int(seconds) * 1_000_000_000 + int(nanoseconds)
    return offsets


# -- escape routes: inherited handles and views of other namespaces ------------------------------

INHERITED = {}  # "fds": [fd, dev, ino] of each fd held when serve() began (or "error": why not listed)
FS_NAMES = {
    0x9FA0: "proc",
    0x27E0EB: "cgroup",
    0x63677270: "cgroup2",
    0x62656572: "sysfs",
    0x6E736673: "nsfs",
    0x19800202: "mqueue",
    0x01021994: "tmpfs",
}
SIOCGSKNS = 0x894C
PIDFD_GETFD = 438  # the syscall's number, one on every architecture
O_PATH = 0o10000000
AT_EMPTY_PATH, STATX_MNT_ID = 0x1000, 0x1000
NS_FILES = {"pid": "pid_for_children", "time": "time_for_children"}  # where setns lands for these two
NET_TABLES = ("unix", "netlink", "packet", "tcp", "tcp6", "udp", "udp6", "raw", "raw6")


def record_inherited():
    """Note every fd this process holds before it opens one of its own: one listing, one fstat each."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError as e:
        INHERITED["error"] = f"/proc/self/fd: {e.strerror}"
        return
    found = []
    for name in names:
        try:
            st = os.fstat(int(name))
        except OSError:  # the listing's own fd, closed by now
            continue
        found.append([int(name), st.st_dev, st.st_ino])
    INHERITED["fds"] = sorted(found)


def errno_name(e):
    import errno

    return errno.errorcode.get(e.errno, str(e.errno))


def errno_of(call, *args):
    """'ok' when call(*args) succeeds, else the errno's name."""
    try:
        call(*args)
    except OSError as e:
        return errno_name(e)
    return "ok"


def fs_name(fd):
    """The filesystem fd is on, by its magic number (fstatfs), or why the kernel would not say (ENOSYS in gVisor)."""
    import ctypes

    buf = (ctypes.c_long * 32)()  # struct statfs begins with f_type
    try:
        checked(libc().fstatfs(fd, buf), "fstatfs")
    except OSError as e:
        return errno_name(e)
    magic = buf[0] & 0xFFFFFFFF
    return FS_NAMES.get(magic, hex(magic))


def fdinfo(fd):
    """/proc/self/fdinfo/FD's fields; none where the kernel refuses them: before Linux 5.14 a process that
    became root of a new user namespace may not read its own fdinfo (EACCES: the directory belongs to the
    host's root, unmapped there)."""
    fields = {}
    try:
        text = read_text(f"/proc/self/fdinfo/{fd}")
    except PermissionError:
        return fields
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def mount_id(fd):
    """The id of the mount fd is on: fdinfo's, else statx's (Linux 5.8); None where neither says, as in gVisor."""
    value = fdinfo(fd).get("mnt_id")
    return int(value) if value is not None else statx_mount_id(fd)


def statx(fd, path, flags, mask):
    """struct statx of `path` (relative to directory fd) as 32 unsigned 64-bit words: stx_mask in word 0's low
    half, stx_ino word 4, stx_btime words 10-11, stx_dev words 17, stx_mnt_id word 18 (Python 3.11 has no
    os.statx). Raises OSError, AttributeError for a C library without statx."""
    import ctypes

    buf = (ctypes.c_uint64 * 32)()  # struct statx: 256 bytes
    checked(libc().statx(fd, path, flags, mask, buf), "statx")
    return buf


def statx_mount_id(fd):
    try:
        buf = statx(fd, b"", AT_EMPTY_PATH, STATX_MNT_ID)
    except (OSError, AttributeError):  # AttributeError: a C library without statx
        return None
    return buf[144 // 8] if buf[0] & STATX_MNT_ID else None


def place(fd):
    """Where directory fd is: [device, inode, mount id]."""
    st = os.fstat(fd)
    return [st.st_dev, st.st_ino, mount_id(fd)]


def climb(fd):
    """The directories from directory fd up to where '..' stops (the process's root for a directory under
    it, else the root of a mount tree outside it), as fds the caller closes; and why it stopped short, if it
    did (a directory this process may not search)."""
    chain = [os.dup(fd)]
    while len(chain) < 256:
        try:
            up = os.open("..", O_PATH | os.O_DIRECTORY, dir_fd=chain[-1])
        except OSError as e:
            return chain, errno_name(e)
        if place(up) == place(chain[-1]):
            os.close(up)
            break
        chain.append(up)
    return chain, ""


def own_mount_ids():
    return {row[0] for row in mountinfo()}


def own_mount(mnt_id, mounts):
    """Whether mount `mnt_id` is one of this mount namespace's (unknown ids count as its own: no evidence)."""
    return mnt_id is None or mnt_id in mounts


def examine_dir(fd, facts, mounts):
    """Where a directory handle leads: its mount, the top of its tree, and what its filesystem shows."""
    chain, stopped = climb(fd)
    try:
        root = os.open("/", O_PATH | os.O_DIRECTORY)
        try:
            facts.update(top=place(chain[-1]), root=place(root))
        finally:
            os.close(root)
        facts["outside_root"] = facts["top"] != facts["root"] and not stopped
        if stopped:
            facts["climb"] = stopped
        dev = os.fstat(fd).st_dev
        fs_root = [d for d in chain if os.fstat(d).st_dev == dev][-1]  # the top of fd's own filesystem
        if facts["fs"] == "proc":  # "self" names this process as that proc's PID namespace numbers it
            try:
                facts["proc_self"] = os.readlink("self", dir_fd=fs_root)
            except OSError:  # this process is no member of that PID namespace
                facts["proc_self"] = ""
            facts["pid"] = os.getpid()
        if facts["fs"] in ("cgroup", "cgroup2"):
            facts["lists_probe"] = lists_probe(fs_root)
    finally:
        for d in chain:
            os.close(d)
    facts["through"] = errno_of(os.listdir, fd)  # what the handle itself allows (no permission check)
    facts["fresh"] = errno_of(reopen, ".", os.O_RDONLY | os.O_DIRECTORY, fd)  # what this process may open
    facts["own_mount"] = own_mount(facts["mnt_id"], mounts)


def reopen(path, flags, dir_fd=None):
    os.close(os.open(path, flags, dir_fd=dir_fd))


def lists_probe(cgroup_dir):
    """Whether this process is in the cgroup at cgroup_dir (its cgroup.procs lists it)."""
    fd = os.open("cgroup.procs", os.O_RDONLY, dir_fd=cgroup_dir)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    return str(os.getpid()) in data.decode().split()


def examine_nsfs(fd, facts):
    """An nsfs handle: whose namespace, and where setns on it lands, tried in a throwaway child."""
    nstype = facts["link"].partition(":")[0]
    facts["nstype"] = nstype
    st, own = os.fstat(fd), os.stat(f"/proc/self/ns/{nstype}")
    facts["own"] = (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
    if facts["own"] or nstype not in NAMESPACES:
        return

    def child():
        result = errno_of(lambda: checked(libc().setns(fd, NAMESPACES[nstype]), "setns"))
        seen = {"setns": result}
        if result == "ok":
            landed = os.stat(f"/proc/self/ns/{NS_FILES.get(nstype, nstype)}")
            seen["landed"] = [landed.st_dev, landed.st_ino]
            if nstype == "net":
                seen["links"] = [name for _, name, _ in links()]
        return seen

    facts.update(_forked(child))


def examine_socket(fd, facts):
    """A socket: the network namespace it acts in (SIOCGSKNS, else this namespace's socket tables)."""
    import _socket
    import fcntl

    sock = _socket.socket(fileno=os.dup(fd))
    facts["family"] = int(sock.family)
    sock.close()
    own = os.stat("/proc/self/ns/net")
    try:
        netns = fcntl.ioctl(fd, SIOCGSKNS, 0)
    except OSError:  # EPERM without CAP_NET_ADMIN over the socket's namespace: look for it here
        facts["own"] = any(
            f" {facts['ino']} " in f" {read_text('/proc/self/net/' + table)} ".replace("\n", " ")
            for table in NET_TABLES
            if os.path.exists("/proc/self/net/" + table)
        )
        return
    st = os.fstat(netns)
    os.close(netns)
    facts["netns"] = [st.st_dev, st.st_ino]
    facts["own"] = (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def examine(fd, mounts):
    """What handle fd is and what it opens, by what the kernel lets this process do with it."""
    import stat

    st = os.fstat(fd)
    facts = {"fd": fd, "dev": st.st_dev, "ino": st.st_ino, "link": os.readlink(f"/proc/self/fd/{fd}")}
    info = fdinfo(fd)
    facts["mnt_id"] = mount_id(fd)
    if "Pid" in info or facts["link"] == "anon_inode:[pidfd]":  # a pidfd (Pid: 0 where its process is outside)
        import signal

        facts.update(kind="pidfd", pid=int(info["Pid"]) if "Pid" in info else None)
        facts["signal"] = errno_of(signal.pidfd_send_signal, fd, 0)
        facts["getfd"] = errno_of(lambda: os.close(checked(libc().syscall(PIDFD_GETFD, fd, 0, 0), "pidfd_getfd")))
        return facts
    facts["fs"] = fs_name(fd)
    name, _, rest = facts["link"].partition(":[")
    if facts["fs"] == "nsfs" or (name in NAMESPACES and rest[:-1].isdigit()):
        facts["kind"] = "nsfs"
        examine_nsfs(fd, facts)
    elif stat.S_ISSOCK(st.st_mode):
        facts["kind"] = "socket"
        examine_socket(fd, facts)
    elif stat.S_ISDIR(st.st_mode):
        facts["kind"] = "dir"
        examine_dir(fd, facts, mounts)
    elif stat.S_ISREG(st.st_mode):
        flags = fcntl_flags(fd)
        facts.update(kind="file", own_mount=own_mount(facts["mnt_id"], mounts))
        facts["through"] = "EBADF" if flags & O_PATH else "ok"
        facts["fresh"] = errno_of(reopen, f"/proc/self/fd/{fd}", flags & os.O_ACCMODE)
    else:
        facts["kind"] = "pipe" if stat.S_ISFIFO(st.st_mode) else "other"
    return facts


def fcntl_flags(fd):
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


@op
def inherited_handles():
    """Every fd the probe held when it began to serve (still the same file), examined; or why none were listed."""
    if "error" in INHERITED:
        raise OSError(2, INHERITED["error"])
    mounts = own_mount_ids()
    found = []
    for fd, dev, ino in INHERITED.get("fds", []):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (dev, ino):
            found.append(examine(fd, mounts))
    return found


@op
def cwd_and_root():
    """The working directory and root of this process, examined as directory handles."""
    mounts = own_mount_ids()
    seen = {}
    for name, path in (("cwd", "."), ("root", "/")):
        fd = os.open(path, O_PATH | os.O_DIRECTORY)
        try:
            seen[name] = {"link": os.readlink(f"/proc/self/{name}"), "mnt_id": mount_id(fd), "fs": fs_name(fd)}
            examine_dir(fd, seen[name], mounts)
        finally:
            os.close(fd)
    return seen


NS_GET_USERNS, NS_GET_PARENT = 0xB701, 0xB702  # ioctl_ns(2)


def owners(fd):
    """The user namespaces that own nsfs handle fd, nearest first, as [device, inode] (the owner, its parent ...),
    as far as this process may see them (NS_GET_USERNS and NS_GET_PARENT refuse one outside its own: EPERM)."""
    import fcntl

    chain = []
    try:
        up = fcntl.ioctl(fd, NS_GET_USERNS)
        while True:
            st = os.fstat(up)
            chain.append([st.st_dev, st.st_ino])
            try:
                parent = fcntl.ioctl(up, NS_GET_PARENT)
            finally:
                os.close(up)
            up = parent
    except OSError:
        return chain


def mounts_of(fstypes):
    """(mount point, fs type, root within its filesystem) of each mount here of one of `fstypes`, in mount order
    (mountinfo's root field: `/` for a whole filesystem, `/sys` for a bind of a subtree, `net:[N]` for nsfs)."""
    found = []
    for line in read_text("/proc/self/mountinfo").splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if tail.split()[0] in fstypes:
            found.append((unescape(fields[4]), tail.split()[0], unescape(fields[3])))
    return found


def open_mount(point, flags, facts):
    """An fd of what is mounted on `point`, or None with `facts["open"]` saying why it could not be opened."""
    try:
        return os.open(point, flags | os.O_CLOEXEC)
    except OSError as e:
        facts["open"] = errno_name(e)
        return None


@op
def namespace_files():
    """Every nsfs mount of this mount namespace (a namespace file bound on a path, as `ip netns add` or a volume
    of /run/netns makes), opened by its path and examined as an inherited nsfs handle: whose namespace, whether
    it is this process's own, where setns on it lands (in a throwaway child), and the user namespaces that own it.
    Its type comes from mountinfo's root field (`net:[4026531840]`); one that another mount covers, or that
    cannot be opened, is reported with `open` saying why."""
    points = {}
    for point, _, root in mounts_of(("nsfs",)):
        points.setdefault(point, []).append(root)
    found = []
    for point, roots in sorted(points.items()):
        found += [{"path": point, "link": r, "nstype": r.partition(":")[0], "open": "covered"} for r in roots[:-1]]
        facts = {"path": point, "link": roots[-1], "nstype": roots[-1].partition(":")[0]}
        found.append(facts)
        fd = open_mount(point, os.O_RDONLY | os.O_NOFOLLOW, facts)
        if fd is None:
            continue
        try:
            if fs_name(fd) != "nsfs":
                facts["open"] = "covered"
                continue
            st = os.fstat(fd)
            facts["ns"] = [st.st_dev, st.st_ino]
            examine_nsfs(fd, facts)
            facts["owners"] = owners(fd)
        finally:
            os.close(fd)
    return found


@op
def fs_instances(fstypes, queue=""):
    """Every mount here of one of `fstypes`, and whether its instance shows this process's own namespace: a proc
    names this process in `self` as its PID namespace numbers it, a sysfs lists in class/net the links this
    network namespace has, an mqueue lists `queue` (made in this IPC namespace by the caller), a cgroup
    filesystem's top cgroup holds this process (its cgroup namespace root; mountinfo shows a cgroup mount's root
    relative to it, so one that begins `/..` lies above it). A bind of a subtree of a proc or sysfs (a runtime's
    masked /proc/sys) is its instance's (the same device) where that instance is mounted whole here too; else
    what it shows cannot be told, and it is reported with `open` saying so, as a mount that another covers or
    that cannot be opened is."""
    seen, whole, parts = [], {}, []
    top = {point: (fstype, root) for point, fstype, root in mounts_of(fstypes)}  # the last mounted on a point
    for point, (fstype, root) in sorted(top.items()):
        facts = {"path": point}
        seen.append(facts)
        fd = open_mount(point, os.O_RDONLY | os.O_DIRECTORY, facts)
        if fd is None:
            continue
        try:
            facts["fs"] = fs_name(fd)
            if facts["fs"][:1] == "E":  # fstatfs refused (ENOSYS in gVisor): the mount table's word for it
                facts["fs"] = fstype
            if facts["fs"] not in fstypes:
                facts["open"] = "covered"
            elif facts["fs"] in ("cgroup", "cgroup2") and root != "/":  # relative to this cgroup namespace's root
                facts.update(shows=f"cgroup {root}", own=not root.startswith("/.."))
            elif root != "/":
                parts.append((facts, os.fstat(fd).st_dev, root))
            else:
                show_instance(fd, point, facts, queue)
                whole[os.fstat(fd).st_dev] = facts
        finally:
            os.close(fd)
    for facts, dev, root in parts:
        if dev in whole:
            facts.update(own=whole[dev].get("own"), shows=f"subtree {root} of the instance at {whole[dev]['path']}")
        else:
            facts["open"] = f"subtree {root} of an instance not mounted whole here"
    return seen


def show_instance(fd, point, facts, queue):
    """What the whole filesystem at fd (mounted on `point`) shows of this process's namespaces (fs_instances)."""
    if facts["fs"] == "proc":
        try:
            facts["shows"] = os.readlink("self", dir_fd=fd)
        except OSError:  # this process is no member of that proc's PID namespace
            facts["shows"] = ""
        facts["own"] = facts["shows"] == str(os.getpid())
    elif facts["fs"] == "sysfs":
        try:
            facts["shows"] = sorted(os.listdir(f"{point}/class/net"))
            facts["own"] = facts["shows"] == sorted(name for _, name, _ in links())
        except OSError as e:
            facts["open"] = errno_name(e)
    elif facts["fs"] == "mqueue":
        facts["shows"] = sorted(os.listdir(fd))
        facts["own"] = queue in facts["shows"]
    else:
        facts["own"] = lists_probe(fd)


# -- the loop -----------------------------------------------------------------------------------


def hello(extra=None):
    ident, hardening = status_facts()
    info = {"identity": ident, "ns": ns_inodes(), "uts": uts(), "kernel": kernel(), "hardening": hardening}
    info.update(extra or {})
    return info


def serve(extra=None):
    """Answer requests from stdin until end of input or an `exit` request."""
    record_inherited()
    out = sys.stdout
    out.write(dumps({"hello": hello(extra)}) + "\n")
    out.flush()
    for line in sys.stdin.buffer:
        request = loads(line.decode())
        name = request.get("op")
        if name == "exit":
            break
        try:
            answer = {"ok": True, "result": OPS[name](**request.get("args", {}))}
        except OSError as e:
            answer = {"ok": False, "errno": e.errno, "error": str(e)}
        except Exception as e:  # an unknown op or bad arguments: say so, keep serving
            answer = {"ok": False, "errno": None, "error": f"{type(e).__name__}: {e}"}
        out.write(dumps(answer) + "\n")
        out.flush()
    os._exit(0)  # every answer is flushed: no interpreter teardown to wait for at the sandbox's end
