"""seccomp: syscalls a filter must refuse, each tried with arguments that do nothing if it is allowed.

The arguments are invalid (a null pointer, a bad fd, an unknown command or flag), or ask for nothing
(unshare(0), iopl(0), settimeofday(NULL, NULL)); so an allowed call fails or succeeds without effect.
Whether a refusal is the filter's is told by the same call in the twin sandbox without it (the harness).
"""

try:  # imported by the harness; in a sandbox probe.py's names are already defined
    from nsconform.inside.probe import libc, op
except ImportError:
    pass

BAD = 0x7FFFFFFF  # an unknown command, clock or flag word
# name -> (x86_64 number, aarch64 number or None where it has none, harmless arguments)
SYSCALLS = {
    "keyctl": (250, 219, (BAD, 0, 0, 0, 0)),
    "add_key": (248, 217, (0, 0, 0, 0, 0)),
    "request_key": (249, 218, (0, 0, 0, 0)),
    "unshare": (272, 97, (0,)),
    "setns": (308, 268, (-1, 0)),
    "mount": (165, 40, (0, 0, 0, 0, 0)),
    "umount2": (166, 39, (0, 0)),
    "pivot_root": (155, 41, (0, 0)),
    "swapon": (167, 224, (0, 0)),
    "swapoff": (168, 225, (0,)),
    "reboot": (169, 142, (0, 0, 0, 0)),
    "init_module": (175, 105, (0, 0, 0)),
    "finit_module": (313, 273, (-1, 0, 0)),
    "delete_module": (176, 106, (0, 0)),
    "kexec_load": (246, 104, (0, 0, 0, BAD)),
    "kexec_file_load": (320, 294, (-1, -1, 0, 0, BAD)),
    "bpf": (321, 280, (BAD, 0, 0)),
    "userfaultfd": (323, 282, (BAD,)),
    "perf_event_open": (298, 241, (0, -1, -1, -1, 0)),
    "open_by_handle_at": (304, 265, (-1, 0, 0)),
    "iopl": (172, None, (0,)),
    "ioperm": (173, None, (0, 0, 0)),
    "clock_settime": (227, 112, (BAD, 0)),
    "settimeofday": (164, 170, (0, 0)),
    "syslog": (103, 116, (BAD, 0, 0)),
    "quotactl": (179, 60, (0, 0, 0, 0)),
    "fsopen": (430, 430, (0, 0)),
    "lookup_dcookie": (212, 18, (0, 0, 0)),
}
MACHINES = {"x86_64": 0, "aarch64": 1}


@op
def syscall_results(names):
    """Each syscall of `names` with its harmless arguments: "ok", the errno's name, or "n/a" where this
    architecture has no such syscall (or the probe does not know its number here)."""
    import ctypes
    import errno
    import os

    column = MACHINES.get(os.uname().machine)
    c = libc()
    found = {}
    for name in names:
        entry = SYSCALLS.get(name)
        number = None if entry is None or column is None else entry[column]
        if number is None:
            found[name] = "n/a"
            continue
        ctypes.set_errno(0)
        ret = c.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in entry[2]))
        err = ctypes.get_errno()
        found[name] = "ok" if ret != -1 else errno.errorcode.get(err, str(err))
    return found
