"""A kernel booted with virtme-ng (`vng`): the host's root shared read-only over 9p, the run's report
directory writable, the kernel's modules (and its config, where known) exported to the VM alone; KVM
where it works, else TCG.

The host's /lib/modules is never written: virtme-ng links /lib/modules/<release> to the kernel's own
modules on a tmpfs inside the VM, and the modules' directory is exported to the VM at its host path
(virtme-ng's guest hides parts of /var, such as /var/cache, under tmpfs).
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nsconform.hygiene import journal, naming
from nsconform.kernels import runner
from nsconform.locations import PACKAGE, checks_dir

MEMORY = "2G"
TRIAL_LIMIT_S = 120.0  # a KVM boot takes seconds; one that has not ended by then is taken as not working
GUEST_OUT = "/run/nsconform/out"  # where the VM sees the run's report directory
# Where the VM sees what the run brings in, read-only: its script (the kernel's command line, which would
# carry it, holds 2048 bytes) and, for a Debian release (--distros), the running installation's code.
GUEST_IN = "/run/nsconform/in"
SCRIPT = "run.sh"
BOOT_LIMIT_S = 600.0  # from vng's start to the VM's first line: a TCG boot takes 15-60 s on 2 cores
TCG = "the VMs run on TCG, QEMU's emulator (slow)"
# virtme-ng's guest init, where the host's root has no udevd: it cannot find the script's virtio ports
NO_SCRIPT_CHANNEL = ("cannot find script I/O ports", "unable to find udevd")


class VMError(RuntimeError):
    """A kernel cannot be booted here (tools missing, image unusable)."""


@dataclass(frozen=True)
class Tools:
    vng: str
    path: str  # PATH for vng, which starts virtme-run and QEMU from it


@dataclass(frozen=True)
class Image:
    path: Path
    modules: Path | None  # a `lib/modules` directory holding lib/modules/<release>, if the kernel has one
    boot: Path | None  # a directory holding config-<release>, shown to the VM as /boot


def tools() -> Tools:
    """vng (beside this Python's scripts first, then on PATH) and QEMU for this machine, or VMError."""
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", os.defpath)])
    vng = shutil.which("vng", path=path)
    if vng is None:
        raise VMError("virtme-ng (vng) is not installed: pip install 'nsconform[kernels]'")
    qemu = f"qemu-system-{platform.machine()}"
    if shutil.which(qemu, path=path) is None:
        raise VMError(f"QEMU ({qemu}) is not installed: apt-get install qemu-system-x86")
    return Tools(vng, path)


def image(path: Path) -> Image:
    """A kernel image given by path: its modules beside it (DIR/lib/modules or DIR/usr/lib/modules in the
    image's directory or one above it, as `make modules_install INSTALL_MOD_PATH=DIR` or an unpacked .deb
    lays them out), and config-<release> beside a vmlinuz-<release>."""
    if not path.is_file():
        raise VMError(f"no kernel image at {path}")
    with path.open("rb") as f:
        head = f.read(0x206)
    if head[:4] != b"\x7fELF" and head[0x202:0x206] != b"HdrS":
        raise VMError(f"{path} is not a Linux kernel image (neither a bzImage nor an ELF vmlinux)")
    path = path.resolve()
    modules = None
    for directory in path.parents:
        if directory == Path("/"):
            break
        found = [d for d in (directory / "lib" / "modules", directory / "usr" / "lib" / "modules") if d.is_dir()]
        if found:
            modules = found[0]
            break
    config = path.parent / path.name.replace("vmlinuz-", "config-", 1)
    boot = path.parent if path.name.startswith("vmlinuz-") and config.is_file() else None
    return Image(path, modules, boot)


def kept_paths() -> list[str]:
    """What the suite in the VM needs of the host's /tmp, should it live there (a checkout or a venv made with
    mktemp, as a CI job's): the working directory, the interpreter's environment and nsconform's files."""
    wanted = {os.getcwd(), sys.prefix, str(PACKAGE), str(checks_dir().parent)}
    return sorted(path for path in wanted if path.startswith("/tmp/"))


def script(suites: list[list[str]], keep: list[str], names: list[str]) -> str:
    """The VM's command (bash), run in nsconform's working directory:
    - a /tmp of its own: virtme-ng's would show the host's, live, and the host's activity would reach the
      run's host audit. The host's paths in `keep` (under /tmp) stay where they were, bound back from the
      host's /tmp, so that the suite's interpreter and files, and paths relative to the working directory,
      still work;
    - the suite in a cgroup of its own, as on a host: virtme-ng's init leaves every process in the root
      cgroup;
    - the BOOTED line, then the suite; several (one per runtime, `names`) in turn, each after its RUNNING line,
      the script's status the last non-zero one."""
    if len(suites) == 1:
        run = [f"exec {shlex.join(suites[0])}"]
    else:
        run = ["status=0"]
        for name, suite in zip(names, suites, strict=True):
            run += [f"echo {runner.RUNNING} {shlex.quote(name)}", f"{shlex.join(suite)} || status=$?"]
        run.append('exit "$status"')
    return "\n".join(
        [
            "set -e",
            'cwd="$PWD"',
            "mkdir -p /run/nsconform-host-tmp",
            "mount --bind /tmp /run/nsconform-host-tmp",
            "mount -t tmpfs nsconform-tmp /tmp",
            f"for path in {shlex.join(keep)}; do" if keep else "for path in; do",
            '  mkdir -p "$path"; mount --bind "/run/nsconform-host-tmp/${path#/tmp/}" "$path"',
            "done",
            "umount -l /run/nsconform-host-tmp",
            'case "$cwd" in /tmp/*) cd "$cwd";; /tmp) cd /;; esac',
            "mkdir /sys/fs/cgroup/nsconform && echo $$ > /sys/fs/cgroup/nsconform/cgroup.procs ||"
            " echo 'nsconform-kernel: the suite stays in the root cgroup'",
            f"echo {runner.BOOTED} $(uname -r)",
            *run,
        ]
    )


@contextmanager
def scratch(found: Tools) -> Iterator[tuple[dict[str, str], Path]]:
    """vng's environment and a directory for what it writes on the host (its HOME's cache, TMPDIR), removed
    afterwards; recorded in this process's journal first, so that a later run reaps it should this one be
    killed (nsconform.hygiene.journal)."""
    record = journal.current()
    directory = Path(tempfile.gettempdir(), f"vng-{naming.unique('vm')}")
    with record.holding("path", str(directory)) as entry:
        directory.mkdir(mode=0o700)
    record.made_path(entry)
    try:
        yield {**os.environ, "PATH": found.path, "HOME": str(directory), "TMPDIR": str(directory)}, directory
    finally:
        shutil.rmtree(directory)
        record.removed(entry)


def command(
    found: Tools,
    kernel: Image,
    kvm: bool,
    out: Path,
    script: str,
    brought: Path | None = None,
    root: Path | None = None,
) -> list[str]:
    """The vng command that boots `kernel` and runs `script` (bash) in it, with `out` writable as GUEST_OUT; on
    the host's root, or on `root` (read-only, as the host's). With `brought`, a directory shown read-only as
    GUEST_IN, the script is written there and run from there, however long it is."""
    argv = [found.vng, "--run", str(kernel.path), "--force-9p", "--cpus", str(len(os.sched_getaffinity(0)))]
    if root is not None:
        argv += ["--root", str(root)]
    if brought is not None:
        (brought / SCRIPT).write_text(script + "\n")
        argv += ["--rodir", f"{GUEST_IN}={brought}"]
        script = f"exec bash {GUEST_IN}/{SCRIPT}"
    argv.append("--verbose")  # the VM's console (the kernel's and its init's lines) beside the script's output
    argv += ["--memory", MEMORY, "--rwdir", f"{GUEST_OUT}={out}"]
    if not kvm:
        argv.append("--disable-kvm")
    if kernel.modules is not None:
        argv += ["--rodir", str(kernel.modules)]
    if kernel.boot is not None:
        argv += ["--rodir", f"/boot={kernel.boot}"]
    return [*argv, "--exec", script]


def script_channel_missing(log: Path) -> str | None:
    """What the VM's init said if it found no script channel (virtio-serial ports), after which the script's
    output and exit status are lost; None if it did not say so."""
    said = []
    with log.open("rb") as f:
        for raw in f:
            line = raw.decode(errors="replace").strip()
            if any(marker in line for marker in NO_SCRIPT_CHANNEL):
                said.append(line)
    if not any(NO_SCRIPT_CHANNEL[0] in line for line in said):
        return None
    return (
        "the VM's script channel is missing, so the suite's output and exit status are lost: the guest said "
        + "; ".join(f"'{line}'" for line in dict.fromkeys(said))
        + ". virtme-ng's guest init finds its script ports through udev on the host's root: "
        "apt-get install udev (install.sh installs it)"
    )


def kvm_works(found: Tools, kernel: Image, say: Callable[[str], None]) -> bool:
    """Whether the VMs can use KVM, decided by trying: /dev/kvm must open, and `kernel` must boot with it
    and run `true`. Says which in one line."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        say(f"KVM: /dev/kvm cannot be opened ({e.strerror}): {TCG}")
        return False
    with scratch(found) as (env, directory):
        out = directory / "out"
        out.mkdir()
        trial = command(found, kernel, True, out, "true")
        ended = runner.run(trial, directory / "trial.log", TRIAL_LIMIT_S, None, env=env, pidns=True)
    if ended.status == 0 and ended.stopped is None:
        say("KVM: a trial boot with it worked: the VMs use KVM")
        return True
    if ended.stopped is not None:
        why = f"no end within {TRIAL_LIMIT_S:.0f} s"
    else:
        why = next((line for line in ended.tail if "error" in line.lower()), ended.tail[-1] if ended.tail else "")
        why = f"exit {ended.status}: {why}"
    say(f"KVM: a trial boot with it failed ({why}): {TCG}")
    return False
