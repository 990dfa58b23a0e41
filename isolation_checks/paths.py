"""paths: what the runtime masks shows nothing inside, and what it makes read-only cannot be written.

The paths are the runtime's declared defaults (a profile's [hardening] masked_paths and readonly_paths; the
OCI runtime spec's linux.maskedPaths and linux.readonlyPaths, which runc and crun write into their default
bundle and docker and podman apply by default). A path this kernel does not have is not judged.
"""

from __future__ import annotations

from typing import Any

from nsconform.fixtures.shipped import mount_table
from nsconform.guarantees import guarantee, skip_nothing

OCI_PATHS = "OCI runtime spec: config-linux.md, Masked Paths and Readonly Paths"
CORE_PATTERN = "a writable /proc/sys/kernel/core_pattern runs a host command as root"
CVE_2022_0492 = "CVE-2022-0492"
DEFAULTS = "the runtime's documented defaults (its profile's [hardening] source)"


def holder(mounts: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The mount `path` is on: the last mounted whose point is path or a directory above it."""
    inside = [m for m in mounts if path == m["point"] or path.startswith(m["point"].rstrip("/") + "/")]
    return max(inside, key=lambda m: (len(m["point"]), mounts.index(m)))


def existing(shipped, paths: tuple[str, ...] | None, verdict) -> list[str]:
    """The declared paths this sandbox has; skipped, saying so, where it has none of them."""
    found = [p for p in paths or () if shipped.exists(p)]
    verdict.note(absent=[p for p in paths or () if p not in found])
    if not found:
        skip_nothing(f"none of the declared paths exists in the sandbox on this kernel: {list(paths or ())}")
    return found


@guarantee(area="paths", declares=("masked_paths",), rests_on="facts", references=(OCI_PATHS, DEFAULTS))
def test_masked_by_a_mount(shipped, verdict):
    """Every declared masked path that exists in the sandbox has a mount over it (the runtime's /dev/null bind
    or read-only tmpfs), as the sandbox's mount table shows."""
    # 1. The sandbox's mount table, and the declared masked paths it has
    paths = existing(shipped, shipped.declared.masked_paths, verdict)
    points = {m["point"]: m for m in mount_table(shipped)}
    # 2. EXPECT a mount exactly at each
    unmasked = [p for p in paths if p not in points]
    verdict.note(masked_by={p: f"{points[p]['fstype']} {points[p]['root']}" for p in paths if p in points})
    verdict.expect(not unmasked, f"no mount masks {', '.join(unmasked)}", unmasked=unmasked)


@guarantee(area="paths", declares=("masked_paths",), rests_on="behaviour", references=(OCI_PATHS,))
def test_masked_show_nothing(shipped, verdict):
    """Every declared masked path that exists inside shows nothing: an empty directory, or a file whose read
    gives no byte, or a refused look."""
    # 1. Look at each declared masked path from inside (lstat, listing, a read of one byte)
    paths = existing(shipped, shipped.declared.masked_paths, verdict)
    seen = shipped.probe("masked_views", paths=paths)
    # 2. EXPECT nothing shown
    shows = {
        p: v
        for p, v in seen.items()
        if v.get("exists") and "refused" not in v and (v.get("count") or v.get("bytes") or v.get("kind") == "other")
    }
    verdict.expect(not shows, f"masked paths show something inside: {', '.join(shows)}", shown=shows)
    verdict.note(looked=len(paths))


@guarantee(
    area="paths", declares=("readonly_paths",), rests_on="facts", references=(OCI_PATHS, CVE_2022_0492, DEFAULTS)
)
def test_readonly_mounted_so(shipped, verdict):
    """Every declared read-only path that exists in the sandbox is on a mount mounted read-only (its per-mount
    options in the sandbox's mount table say `ro`)."""
    # 1. The mount holding each declared read-only path
    paths = existing(shipped, shipped.declared.readonly_paths, verdict)
    mounts = mount_table(shipped)
    on = {p: holder(mounts, p) for p in paths}
    # 2. EXPECT each read-only
    writable = [p for p, m in on.items() if "ro" not in m["options"]]
    verdict.note(mounts={p: f"{m['point']} {','.join(m['options'])}" for p, m in on.items()})
    verdict.expect(not writable, f"mounted read-write inside: {', '.join(writable)}", writable=writable)


@guarantee(
    area="paths",
    declares=("readonly_paths",),
    rests_on="behaviour",
    references=(OCI_PATHS, CORE_PATTERN, "access(2)"),
)
def test_readonly_not_writable(shipped, verdict):
    """Every declared read-only path that exists inside cannot be written: the kernel's access(W_OK) refuses
    the path (for a directory, a file under it that its mode lets root write), never by trying a write."""
    # 1. Ask the kernel from inside, per path: the read-only flag of its file system, access(W_OK)
    paths = existing(shipped, shipped.declared.readonly_paths, verdict)
    seen = shipped.probe("write_access", paths=paths)
    verdict.note(seen=seen)
    # 2. Judge each: writable where access says ok; not writable where it refuses, or no file to ask and the
    #    file system is read-only; else it cannot be told
    writable = [p for p, v in seen.items() if v.get("access_w") == "ok"]
    told = [p for p, v in seen.items() if "access_w" in v or v.get("read_only_fs")]
    verdict.expect(not writable, f"writable inside: {', '.join(writable)}", writable=writable)
    if not told:
        skip_nothing(f"no declared read-only path could be judged: {seen}")
