"""The sockets area, inside: the Unix socket files reachable (lstat only: never a connect, which could start a
socket-activated daemon)."""

try:  # imported by the harness; in a sandbox probe.py's and devices.py's names are already defined
    from nsconform.inside.areas.devices import WALK_LIMIT, walk
    from nsconform.inside.probe import op
except ImportError:
    pass


@op
def socket_files(roots, root="/", limit=WALK_LIMIT):
    """[path, device, inode] of every Unix socket file under each of `roots` (walk, `limit` entries a root), seen
    from `root`; and the roots whose walk was cut short."""
    import stat

    sockets, cut = [], []
    for start in roots:
        found, short = walk([start], stat.S_ISSOCK, root, limit)
        sockets += [[path, st.st_dev, st.st_ino] for path, st in found]
        if short:
            cut.append(start)
    return {"sockets": sockets, "cut_short": cut}
