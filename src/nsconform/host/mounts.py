"""The harness's own mount points on the host, to watch mount propagation with.

Every mount of a typical CI host may be private, which would hide a runtime that keeps the
host's propagation. So, as root and before a worker's first sandbox starts (every sandbox then
starts with a copy of them), the harness makes, each in a scratch dir of the worker's volume (a
directory a runtime with a root of its own binds at the same path inside: a profile's {volume}):

  shared  the dir bind-mounted on itself and made MS_SHARED: a peer group of the harness's own,
          under which a mount made on one side reaches the other unless the sandbox's copy was
          made private (or, host to sandbox only, slave);
  held    a tmpfs on the dir, for a sandbox to unmount its own copy of.

Host-side mounts use the probe's ctypes calls (never a shell), only ever under these scratch
dirs, are journaled (nsconform.hygiene.journal) before they are made, and are unmounted and removed
when their block ends, also when a check fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from nsconform.host.observe import scratch_dir, volume
from nsconform.hygiene import journal, naming, objects
from nsconform.inside import probe


@dataclass(frozen=True)
class MountScratch:
    shared: str = ""
    held: str = ""
    held_source: str = ""  # the held tmpfs's source field in mountinfo: its unique name
    unavailable: str = ""  # why there are none, if there are none


@contextmanager
def mount_scratch_for(namespaces: Iterable[str]) -> Iterator[MountScratch]:
    """The worker's volume for the block (nsconform.host.observe.volume) and, when mount checks run as root,
    the scratch mount points in it, else a MountScratch saying why there are none."""
    with volume():
        if "mnt" not in namespaces:
            yield MountScratch(unavailable="mnt is not among --nsc-namespaces")
        elif os.geteuid() != 0:
            yield MountScratch(unavailable="making a shared mount point on the host needs root; this run is rootless")
        else:
            with scratch_mounts() as scratch:
                yield scratch


@contextmanager
def scratch_mounts() -> Iterator[MountScratch]:
    """The shared and held mount points, in scratch dirs of the volume, for the block."""
    with ExitStack() as stack:
        try:
            shared = stack.enter_context(scratch_dir("shared", mode=0o711))
            stack.enter_context(bound_on_itself(shared))
            probe.mount(None, shared, None, probe.MS_SHARED)
            held = stack.enter_context(scratch_dir("held"))
            scratch = MountScratch(shared=shared, held=held, held_source=stack.enter_context(tmpfs_on(held)))
        except OSError as e:
            stack.close()
            scratch = MountScratch(unavailable=f"the harness could not make its own mount points on the host: {e}")
        yield scratch


@contextmanager
def bound_on_itself(path: str) -> Iterator[str]:
    """`path` bind-mounted on itself (so that its propagation can be set) for the block."""
    with journaled_mount(path, None, lambda: probe.mount(path, path, None, probe.MS_BIND)):
        yield path


@contextmanager
def journaled_mount(target: str, source: str | None, mount: Callable[[], None]) -> Iterator[None]:
    """`mount()` makes a mount on `target` (of `source`, if it names it) for the block, journaled; detached after
    with whatever is mounted below it."""
    with journal.current().for_block(
        "mount",
        target,
        mount,
        lambda _: probe.unmount(target, detach=True),
        lambda _: objects.mount_identity(target),
        source=source,
    ):
        yield


@contextmanager
def tmpfs_on(target: str) -> Iterator[str]:
    """A tmpfs with a fresh source name on directory `target` for the block; yields the source name."""
    source = naming.unique("tmpfs")
    with journaled_mount(target, source, lambda: probe.mount_tmpfs(target, source)):
        yield source


@contextmanager
def subdir(parent: str) -> Iterator[str]:
    """A fresh directory under `parent` (a harness scratch dir) for the block.

    A mount that reached it from a leaky sandbox is detached before the directory is removed.
    """
    path = os.path.join(parent, naming.unique("dir"))
    os.mkdir(path, 0o755)
    try:
        yield path
    finally:
        if path in mount_points(probe.mountinfo()):
            probe.unmount(path, detach=True)
        os.rmdir(path)


def mount_points(table: list[list]) -> set[str]:
    return {row[2] for row in table}


def sources(table: list[list]) -> set[str]:
    return {row[4] for row in table}
