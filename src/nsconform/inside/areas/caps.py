"""caps: harmless actions that only a capability allows, each tried and undone at once.

NET_RAW: a raw ICMP socket, opened and closed. DAC_READ_SEARCH: open_by_handle_at on a handle of this
process's root directory (the harness's own root for its sandboxes), opened and closed ("shocker", 2014).
SYS_ADMIN: a 4 KiB tmpfs mounted on a directory of the sandbox's own root and unmounted at once (the harness
asks only where the sandbox has a mount namespace of its own). Each answer is "ok" or the errno's name.
"""

try:  # imported by the harness; in a sandbox probe.py's names are already defined
    from nsconform.inside.probe import checked, errno_name, libc, mount, op, unmount
except ImportError:
    pass

MAX_HANDLE_SZ = 128


def try_net_raw():
    import _socket

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_RAW, _socket.IPPROTO_ICMP)
    sock.close()


def try_dac_read_search():
    import ctypes
    import os

    class FileHandle(ctypes.Structure):
        _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]

    handle = FileHandle(MAX_HANDLE_SZ, 0)
    mount_id = ctypes.c_int(0)
    c = libc()
    checked(c.name_to_handle_at(-100, b"/", ctypes.byref(handle), ctypes.byref(mount_id), 0), "name_to_handle_at")
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = checked(c.open_by_handle_at(root, ctypes.byref(handle), os.O_RDONLY | os.O_DIRECTORY), "open_by_handle_at")
        os.close(fd)
    finally:
        os.close(root)


def try_sys_admin(target):
    mount("nsconform-caps", target, "tmpfs", 0, "size=4k")
    unmount(target, detach=True)


CAP_ACTIONS = {"NET_RAW": try_net_raw, "DAC_READ_SEARCH": try_dac_read_search, "SYS_ADMIN": try_sys_admin}


@op
def cap_actions(names, scratch="/tmp"):
    """Try the harmless action of each capability in `names` (NET_RAW, DAC_READ_SEARCH, SYS_ADMIN, whose tmpfs
    goes on directory `scratch`): per name, "ok" or the errno's name."""
    found = {}
    for name in names:
        try:
            CAP_ACTIONS[name](scratch) if name == "SYS_ADMIN" else CAP_ACTIONS[name]()
            found[name] = "ok"
        except OSError as e:
            found[name] = errno_name(e)
    return found
