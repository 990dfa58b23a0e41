"""The native runtime's launcher: builds the namespaces in the probe's own interpreter, then serves.

Sent over stdin after the probe's source (see nsconform/sandbox/native.py), so it has the probe's
helpers in scope and needs no file of the checkout. Standard library only. The parent that
stays outside a new PID namespace only relays the init's exit status.

`config` (JSON, from argv): flags (CLONE_NEW* bits to unshare), namespaces (their names),
uid_map and gid_map (lines: inside, outside, count), setgroups ("allow" or "deny"), and
leaks: deliberate flaws for the negative controls in tests/ (never set by the harness):
  host_proc     keep the host's /proc in a new PID+mount namespace
  host_dev_shm  keep the host's /dev/shm in a new IPC+mount namespace
  no_init_fork  unshare PID but serve from the unshared process itself, which is not PID 1
  keep_propagation  leave the mount tree's propagation as inherited (shared stays shared)
  lo_down       leave the loopback link of a new network namespace down
  rename_host   give a new UTS namespace another hostname and domain name
  linger        leave behind a detached process in the sandbox's namespaces that outlives the sandbox
                (until the harness process exits), pinning e.g. its network namespace
and escape routes (docs/escapes.md), each a handle or view of the host's kept inside:
  nsfs_NS       an fd of the host's NS namespace (/proc/self/ns/NS opened before the unshare)
  host_root_fd  an fd of the host's root directory, in the host's mount namespace
  host_dir      an fd of a directory only the host's root may read (/root), opened as the host's root
  host_socket   a netlink socket of the host's network namespace
  host_pidfd    a pidfd of the process that started the launcher, outside the sandbox
  host_proc_fd  an fd of the host's /proc instance, opened in the new mount namespace before the fresh one
  host_cgroup_fd  fds of the host's cgroup hierarchies, opened in the new mount namespace before the fresh ones
  host_cwd      a working directory in the host's mount namespace (CVE-2024-21626)
  host_root_dir a root directory in the host's mount namespace
  host_sysfs    keep the host's sysfs in a new network+mount namespace
  host_mqueue   an mqueue filesystem of the host's IPC namespace mounted inside (in the private /dev/shm)
  host_cgroupfs keep the host's cgroup mounts in a new cgroup+mount namespace
and escape routes by path, each reachable inside a new mount namespace (at LEAK_DIR, a tmpfs of its own):
  ns_file_NS    the host's NS namespace file (/proc/self/ns/NS opened before the unshare) bound on LEAK_DIR/NS
                (for mnt, a copy of the host's mount tree in a newer namespace: the kernel binds no older one)
  keep_ns_files keep the namespace files the mount table inherited from the host (not detached)
  host_proc_at  the host's proc bound on LEAK_DIR/proc, beside the fresh /proc
  host_sysfs_at the host's sysfs bound on LEAK_DIR/sys, beside the fresh /sys
  host_cgroupfs_at  the host's cgroup hierarchies bound on LEAK_DIR/cgroupN, beside the fresh ones

Sound, the launcher hands over only its stdin, stdout and stderr, detaches the namespace files the host's
mount table holds (named network namespaces, a container engine's netns files) from a new mount namespace,
and gives a new mount namespace a fresh sysfs where the network namespace is new, and fresh cgroup mounts
where the cgroup namespace is.

A new time namespace gets TIME_OFFSET_S on its monotonic and boot-time clocks, written to
/proc/self/timens_offsets between the unshare and the fork that makes its first member.

`fork_server` runs the launcher from a fork server instead (nsconform/sandbox/forkserver.py): one such
interpreter per harness process loads all this once and forks a child per sandbox, which then
launches as above (an interpreter's start is most of a sandbox's cost, ~7 ms).
"""

import os

try:  # in the sandbox these names come from the probe's source, sent just before this one
    from nsconform.inside.probe import (
        MNT_DETACH,
        MS_BIND,
        MS_NODEV,
        MS_NOEXEC,
        MS_NOSUID,
        MS_PRIVATE,
        MS_REC,
        NAMESPACES,
        checked,
        codec,
        dumps,
        identity,
        libc,
        loads,
        mount,
        mounts_of,
        read_text,
        serve,
        set_uts,
        unescape,
    )
except ImportError:
    pass

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
SIOCSIFFLAGS = 0x8914
IFF_UP_LOOPBACK_RUNNING = 0x1 | 0x8 | 0x40
TIME_OFFSET_S = 7 * 86400  # a new time namespace's clocks run a week ahead of the host's
LEAK_DIR = "/mnt"  # where the leaks by path are reachable inside (a tmpfs over the sandbox's copy of it)
HOST_VIEWS_AT = (("host_proc_at", "/proc", "proc"), ("host_sysfs_at", "/sys", "sys"))  # leak, host's view, name


def write_file(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_id_maps(pid, config):
    if config["setgroups"] == "deny":
        write_file(f"/proc/{pid}/setgroups", "deny")
    for name in ("uid_map", "gid_map"):
        write_file(f"/proc/{pid}/{name}", "".join("{} {} {}\n".format(*line) for line in config[name]))


def unshare_with_maps(config):
    """unshare(flags); with a new user namespace, map it and become its root.

    Only a process with CAP_SETUID in the parent user namespace may map more than its own
    uid, so a privileged launcher leaves the writing to a helper child that stays outside.
    """
    c = libc()
    if "user" not in config["namespaces"]:
        checked(c.unshare(config["flags"]), "unshare")
        return
    if os.geteuid() != 0:
        checked(c.unshare(config["flags"]), "unshare")
        write_id_maps("self", config)
    else:
        gate_r, gate_w = os.pipe()
        helper = os.fork()
        if helper == 0:
            os.close(gate_w)
            os.read(gate_r, 1)
            try:
                write_id_maps(os.getppid(), config)
            except OSError:
                os._exit(1)
            os._exit(0)
        os.close(gate_r)
        try:
            checked(c.unshare(config["flags"]), "unshare")
        finally:
            os.close(gate_w)  # wakes the helper; it finds the namespace made or not
        _, status = os.waitpid(helper, 0)
        if status != 0:
            raise OSError(1, "writing uid_map/gid_map of the new user namespace failed")
    if config["setgroups"] == "allow":
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def become_init():
    """Fork into a new PID (or time) namespace; the parent relays the child's exit status."""
    child = os.fork()
    if child:
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    libc().prctl(PR_SET_PDEATHSIG, 9)


def loopback_up():
    import ctypes

    c = libc()
    sock = checked(c.socket(2, 2, 0), "socket")  # AF_INET, SOCK_DGRAM
    ifreq = ctypes.create_string_buffer(b"lo".ljust(16, b"\0") + IFF_UP_LOOPBACK_RUNNING.to_bytes(2, "little"), 40)
    try:
        checked(c.ioctl(sock, SIOCSIFFLAGS, ifreq), "SIOCSIFFLAGS lo")
    finally:
        os.close(sock)


def set_time_offsets():
    """Offset the clocks of the new time namespace, before its first member exists.

    Becoming root of a new user namespace made this process undumpable, which gives its /proc
    files to the host's root: it is dumpable for the write only.
    """
    c = libc()
    dumpable = c.prctl(PR_GET_DUMPABLE)
    c.prctl(PR_SET_DUMPABLE, 1)
    try:
        write_file("/proc/self/timens_offsets", f"monotonic {TIME_OFFSET_S} 0\nboottime {TIME_OFFSET_S} 0\n")
    finally:
        c.prctl(PR_SET_DUMPABLE, dumpable)


def linger(harness):
    """Leak: a detached grandchild stays in the sandbox's namespaces until process `harness` exits."""
    middle = os.fork()
    if middle:
        os.waitpid(middle, 0)
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        import select

        select.select([os.pidfd_open(harness)], [], [])
    finally:
        os._exit(0)


def host_handles(leaks):
    """Leaks: handles of the host opened before the unshare and kept (nsfs_NS, host_root_fd, host_dir,
    host_socket, host_pidfd)."""
    kept = [os.open("/", os.O_RDONLY | os.O_DIRECTORY)] if "host_root_fd" in leaks else []
    kept += [os.open(f"/proc/self/ns/{leak[5:]}", os.O_RDONLY) for leak in sorted(leaks) if leak.startswith("nsfs_")]
    if "host_dir" in leaks:
        kept.append(os.open("/root", os.O_RDONLY | os.O_DIRECTORY))
    if "host_socket" in leaks:
        kept.append(checked(libc().socket(16, 3, 0), "socket"))  # AF_NETLINK, SOCK_RAW, NETLINK_ROUTE
    if "host_pidfd" in leaks:
        kept.append(os.pidfd_open(os.getppid()))
    return kept


def detach_namespace_files():
    """Where the host's mount table holds namespace files (named network namespaces, a container engine's netns
    files), unshare a mount namespace of this process's own, make its tree private and detach every one of them:
    the sandbox's mount namespace, made from this one next, has none. Before the sandbox's user namespace exists,
    which would lock them (EINVAL); private first, so that no detach propagates to the host's mounts."""
    points = [point for point, _, _ in mounts_of(("nsfs",))]
    if not points:
        return
    checked(libc().unshare(NAMESPACES["mnt"]), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for point in reversed(points):  # the last mounted on a point first (the copy has the same mounts)
        try:
            checked(libc().umount2(point.encode(), MNT_DETACH), f"umount {point}")
        except OSError as e:  # EINVAL: covered by another mount, out of reach by its path (so it stays, evidence)
            if e.errno != 22:
                raise


def mount_points(fstypes):
    """The mount point of each mount of one of `fstypes` here, with its superblock options (the last one mounted
    at a point: the one on top)."""
    found = {}
    for line in read_text("/proc/self/mountinfo").splitlines():
        head, _, tail = line.partition(" - ")
        fstype, _, options = tail.split()[:3]
        if fstype in fstypes:
            found[unescape(head.split()[4])] = (fstype, options)
    return found


def fresh_cgroup_mounts():
    """Mount each cgroup hierarchy mounted here afresh on the same point: in a new cgroup namespace, a cgroup
    filesystem mounted from inside shows the namespace's root, not the host's hierarchy above it. A tmpfs goes
    between the two: the kernel refuses a filesystem on a mount point where it is mounted already (EBUSY)."""
    for point, (fstype, options) in mount_points(("cgroup", "cgroup2")).items():
        if point.startswith(LEAK_DIR + "/"):
            continue  # leak host_cgroupfs_at's
        data = ",".join(o for o in options.split(",") if o not in ("rw", "ro") and not o.startswith("release_agent"))
        mount("tmpfs", point, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755")
        mount(fstype, point, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, data or None)


def host_mqueue(host_ipc):
    """Leak: the mqueue filesystem of the host's IPC namespace (joined for the mount), in the private /dev/shm."""
    own = os.open("/proc/self/ns/ipc", os.O_RDONLY)
    try:
        checked(libc().setns(host_ipc, NAMESPACES["ipc"]), "setns")
        os.mkdir("/dev/shm/mqueue")
        mount("mqueue", "/dev/shm/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        checked(libc().setns(own, NAMESPACES["ipc"]), "setns")
    finally:
        os.close(own)


def leaks_by_path(leaks, ns_files):
    """Leaks: the host's namespace files (`ns_files`: name -> fd, closed here) and filesystem instances, reachable
    at LEAK_DIR (bound before the fresh instances are mounted over the host's)."""
    binds = [(source, name) for leak, source, name in HOST_VIEWS_AT if leak in leaks]
    if "host_cgroupfs_at" in leaks:
        binds += [(point, f"cgroup{i}") for i, point in enumerate(sorted(mount_points(("cgroup", "cgroup2"))))]
    if binds or ns_files:
        mount("tmpfs", LEAK_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755")
    for source, name in binds:
        os.mkdir(f"{LEAK_DIR}/{name}")
        mount(source, f"{LEAK_DIR}/{name}", None, MS_BIND)
    for name, fd in sorted(ns_files.items()):
        os.close(os.open(f"{LEAK_DIR}/{name}", os.O_CREAT | os.O_WRONLY, 0o600))
        if name == "mnt":
            bind_host_mount_tree(fd, f"{LEAK_DIR}/mnt")
        else:
            mount(f"/proc/self/fd/{fd}", f"{LEAK_DIR}/{name}", None, MS_BIND)
        os.close(fd)


def bind_host_mount_tree(host_mnt, target):
    """Leak ns_file_mnt: the kernel binds no mount namespace file in a namespace as new or newer (the host's in the
    sandbox's: EINVAL), so a child joins the host's mount namespace and unshares a copy of its tree, newer than the
    sandbox's; its namespace file is bound on `target`, and the child exits."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            checked(libc().setns(host_mnt, NAMESPACES["mnt"]), "setns")
            checked(libc().unshare(NAMESPACES["mnt"]), "unshare")
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(1, "leak ns_file_mnt: the child could not make a copy of the host's mount tree")
        fd = os.open(f"/proc/{child}/ns/mnt", os.O_RDONLY)
        try:
            mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
        finally:
            os.close(fd)
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(child, 0)


def mount_views(namespaces, leaks, kept, host_ipc):
    """In a new mount namespace, the pseudo-filesystems of the sandbox's own namespaces where the host's were
    (with the leaks that keep the host's, or a handle of them in `kept`)."""
    if "host_proc_fd" in leaks:
        kept.append(os.open("/proc", os.O_RDONLY | os.O_DIRECTORY))
    if "pid" in namespaces and "host_proc" not in leaks:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if "ipc" in namespaces and "host_dev_shm" not in leaks:
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        if os.path.isdir("/dev/mqueue"):
            mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if host_ipc is not None:
            host_mqueue(host_ipc)
    if "host_cgroup_fd" in leaks:
        kept += [os.open(point, os.O_RDONLY | os.O_DIRECTORY) for point in mount_points(("cgroup", "cgroup2"))]
    if "cgroup" in namespaces and "host_cgroupfs" not in leaks:
        fresh_cgroup_mounts()
    if "net" in namespaces and "host_sysfs" not in leaks:
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def launch(config):
    """Build the namespaces of `config` around this process, then serve the harness."""
    namespaces = set(config["namespaces"])
    leaks = set(config["leaks"])
    harness = os.getppid()
    libc().prctl(PR_SET_PDEATHSIG, 9)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the sandbox inherits its stdin, stdout and stderr only
    kept = host_handles(leaks)
    ns_files = {leak[8:]: os.open(f"/proc/self/ns/{leak[8:]}", os.O_RDONLY) for leak in leaks if leak[:8] == "ns_file_"}
    host_ipc = os.open("/proc/self/ns/ipc", os.O_RDONLY) if "host_mqueue" in leaks else None
    host_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY) if leaks & {"host_cwd", "host_root_dir"} else None
    if "mnt" in namespaces and os.geteuid() == 0 and not leaks & {"keep_ns_files", "keep_propagation"}:
        detach_namespace_files()  # rootless, the sandbox's user namespace comes first and locks them: refused there
    unshare_with_maps(config)
    libc().prctl(PR_SET_PDEATHSIG, 9)  # again: becoming root of a new user namespace cleared it
    if "time" in namespaces:
        set_time_offsets()
    if "mnt" in namespaces and "keep_propagation" not in leaks:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    if config["flags"] & (NAMESPACES["pid"] | NAMESPACES["time"]) and "no_init_fork" not in leaks:
        become_init()
    host_pid = identity()["nspid"][0]  # read through the host's /proc, before a fresh one hides it
    if "mnt" in namespaces:
        leaks_by_path(leaks, ns_files)
        mount_views(namespaces, leaks, kept, host_ipc)
    else:
        kept += ns_files.values()  # no mount namespace to bind them in: they stay open (the inherited-handle class)
    if host_ipc is not None:
        os.close(host_ipc)
    if "uts" in namespaces and "rename_host" in leaks:
        set_uts(hostname="nsconform-leaky", domainname="nsconform-leaky")
    if "net" in namespaces and "lo_down" not in leaks:
        loopback_up()
    if "linger" in leaks:
        linger(harness)
    if host_root is None:
        os.chdir("/")
    else:
        os.fchdir(host_root)
        if "host_root_dir" in leaks:
            os.chroot(".")
        os.close(host_root)
    serve({"host_pid": host_pid})


def fork_server(control_fd):
    """Serve the harness's requests on the SOCK_SEQPACKET socket `control_fd` until it closes.

    `{"config": CONFIG}` with three fds (the sandbox's stdin, stdout, stderr): fork a child that
    launches CONFIG on them; answers `{"pid": PID}`. `{"reap": PID}`, once the harness saw that child
    exit (its pidfd): wait for it; answers `{"status": WAIT_STATUS}`. The children stay zombies until
    reaped, so that their pids are not reused while the harness holds them.
    """
    import socket

    libc().prctl(PR_SET_PDEATHSIG, 9)
    codec()  # what every launch needs, loaded once
    control = socket.socket(fileno=control_fd)
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1 << 16, 3)
        if not message:
            os._exit(0)
        request = loads(message.decode())
        if "reap" in request:
            try:
                answer = {"status": os.waitpid(request["reap"], 0)[1]}
            except ChildProcessError:
                answer = {"status": None}
        else:
            child = os.fork()
            if child == 0:
                control.close()
                launch_forked(request["config"], fds)
            answer = {"pid": child}
        for fd in fds:
            os.close(fd)
        control.send(dumps(answer).encode())


def launch_forked(config, fds):
    """In the fork server's child: take the sandbox's stdin, stdout and stderr, then launch; never returns."""
    import sys

    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin, sys.stdout = open(0, closefd=False), open(1, "w", closefd=False)  # noqa: SIM115
    try:
        launch(config)
    except BaseException as e:
        os.write(2, f"launcher: {type(e).__name__}: {e}\n".encode())
    os._exit(1)
