"""The attach runtime's launcher: joins a running process's namespaces (like `nsenter -t PID -a`), then serves.

Sent over stdin after the probe's and the native launcher's sources (see nsconform/sandbox/attach.py), so it
has their helpers in scope and needs no file of the checkout. Standard library only.

`config` (JSON, from argv): pid (the target), starttime (its start time in clock ticks, field 22 of
/proc/PID/stat, as the harness saw it: a later process with the same pid is not the target), inodes
(the target's namespaces as the harness saw them: a target that has moved since is an error, never
a verdict), ns_files (enter through /proc/PID/ns/* one by one, as kernels before 5.8 must, instead of
setns on a pidfd, all at once).

Every namespace of the target that is not already this process's is entered. With a PID namespace
the process forks, so that the child, which serves, is inside it (the parent outside relays its exit
status). With a user namespace, the probe becomes root of it (uid and gid 0, no supplementary group
where setgroups is allowed), as nsenter does. Nothing is written into the target: the probe only joins.
"""

import os

try:  # in the sandbox these names come from the sources sent just before this one
    from nsconform.inside.launcher import PR_SET_PDEATHSIG, become_init
    from nsconform.inside.probe import NAMESPACES, checked, codec, libc, ns_inodes, read_text, serve
    from nsconform.namespaces import SETNS_ORDER
except ImportError:
    pass

EINVAL = 22


class JoinRefused(Exception):
    """The target cannot be joined as the harness saw it: it says why on stderr, and the harness reports error."""


def preload():
    """Load, while the host's files are reachable, every module and library the probe's operations use:
    the target's root may hold no Python at all."""
    import ctypes  # noqa: F401
    import json  # noqa: F401
    import signal  # noqa: F401
    import socket  # noqa: F401
    import time  # noqa: F401

    libc()
    codec()


def starttime(pid):
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    stat = read_text(f"/proc/{pid}/stat")
    return int(stat.rsplit(")", 1)[1].split()[19])


def open_target(config):
    """A pidfd of the target, once it is known to be the process the harness saw, in the namespaces it saw."""
    pid = config["pid"]
    try:
        pidfd = os.pidfd_open(pid)
        found, started = ns_inodes(pid), starttime(pid)
    except (ProcessLookupError, FileNotFoundError):
        raise JoinRefused(f"the target process {pid} has exited") from None
    import select

    if select.select([pidfd], [], [], 0)[0] or started != config["starttime"]:
        raise JoinRefused(f"the target process {pid} has exited (its pid now names another process)")
    moved = sorted(ns for ns, inode in config["inodes"].items() if found.get(ns) != inode)
    if moved:
        raise JoinRefused(f"the target process {pid} has left its namespaces since the run started: {', '.join(moved)}")
    return pidfd, found


def enter(pidfd, config, target):
    """setns into each namespace of the target that is not this process's; returns their names."""
    own = ns_inodes()
    joining = [(ns, NAMESPACES[ns]) for ns in SETNS_ORDER if ns in target and target[ns] != own.get(ns)]
    if not joining:
        return set()
    c = libc()
    if not config["ns_files"]:
        flags = 0
        for _, flag in joining:
            flags |= flag
        try:
            checked(c.setns(pidfd, flags), "setns on the target's pidfd")
            return {ns for ns, _ in joining}
        except OSError as e:
            if e.errno != EINVAL:  # EINVAL: a kernel before 5.8, whose setns takes no pidfd
                raise
    fds = [(ns, flag, os.open(f"/proc/{config['pid']}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)) for ns, flag in joining]
    try:
        for ns, flag, fd in fds:
            checked(c.setns(fd, flag), f"setns into the target's {ns} namespace")
    finally:
        for _, _, fd in fds:
            os.close(fd)
    return {ns for ns, _ in joining}


def become_root():
    """uid and gid 0 of the user namespace just joined (nsenter's default), with no supplementary group."""
    if read_text("/proc/self/setgroups").strip() == "allow":  # where it is deny, the groups stay, as they must
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def attach(config):
    """Join the namespaces of the target in `config`, then serve the harness from inside them."""
    libc().prctl(PR_SET_PDEATHSIG, 9)
    preload()
    try:
        pidfd, target = open_target(config)
        host_proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the host's, for the host pid
        joined = enter(pidfd, config, target)
    except OSError as e:
        raise JoinRefused(f"cannot join the namespaces of process {config['pid']}: {e}") from None
    os.close(pidfd)
    if "pid" in joined:
        become_init()  # not the init here: the fork makes the child a member of the target's PID namespace
    host_pid = int(os.readlink("self", dir_fd=host_proc))
    os.close(host_proc)
    if "user" in joined:
        become_root()
    mismatch = sorted(ns for ns in NAMESPACES if ns in target and ns_inodes().get(ns) != target[ns])
    if mismatch:
        raise JoinRefused(f"after setns, the probe is not in the target's {', '.join(mismatch)} namespaces")
    os.chdir("/")
    serve({"host_pid": host_pid, "attached": config["pid"]})


def main(config):
    """attach(), with a refusal said in one line on stderr (the harness shows it) and exit status 2."""
    import sys

    try:
        attach(config)
    except JoinRefused as e:
        sys.stderr.write(f"nsconform attach: {e}\n")
        sys.exit(2)
