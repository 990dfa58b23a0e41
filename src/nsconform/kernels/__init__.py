"""`nsconform --kernels=LIST` and `--distros=LIST`: the same suite on several kernels or Debian releases, each
in REPORT_DIR/<entry>/, merged into one compatibility matrix, REPORT_DIR/matrix.html and matrix.md
(docs/kernels.md, docs/distros.md); and `--runtime=LIST`, one run per runtime, in REPORT_DIR/<entry>/<runtime>/
(or REPORT_DIR/<runtime>/ without kernels or releases).

An entry is `host` (the running kernel, the suite run directly), a Debian kernel series (kernels.debian),
a kernel image's path, or a Debian release (nsconform.distros.roots: its own root and kernel); every entry
but `host` boots in a VM (kernels.vm), which runs every runtime's suite in turn. Each entry's trouble (an
unknown series, a missing image or tool, a kernel that does not boot, a run past its wall-clock limit)
is said for that entry, and the others still run.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nsconform.distros import roots
from nsconform.hygiene import reaper
from nsconform.inputs import KERNEL_TIMEOUT_S, InputError, seconds
from nsconform.kernels import debian, runner, vm
from nsconform.report import kcidb, merge
from nsconform.report.writing import VIEWS, ReportDirError, ReportWriteError, check_writable, write_set
from nsconform.settings import PREFIX, kcidb_from, option

LIMIT = option("kernel-timeout")
LOG = "console.log"  # beside each entry's reports: the run's whole output
# A probe's time to answer in a VM on TCG, where --probe-timeout is not given: QEMU's emulator is some 20 times
# slower than the host, and a runtime's start (runc's re-exec of itself) took over 10 s on a busy machine.
TCG_PROBE_TIMEOUT_S = 60
FAILING = ("violated", "error")


class EntryError(RuntimeError):
    """An entry of --kernels that cannot be run."""


@dataclass(frozen=True)
class Entry:
    name: str  # as listed
    directory: str  # its report directory's name: the entry, or the image's file name
    distro: bool = False  # a Debian release of --distros

    @property
    def kind(self) -> str:
        if self.distro:
            return "distro"
        if self.name == "host":
            return "host"
        if re.fullmatch(r"\d+\.\d+", self.name):
            return "series"
        return "image"


def unique_names(bases: list[str]) -> list[str]:
    """Each name as it is, a repeated one with -2, -3 ..."""
    seen: dict[str, int] = {}
    out = []
    for base in bases:
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def entries_of(names: list[str], distro: bool = False) -> list[Entry]:
    """The entries in order, each with a report directory of its own (a repeated name gets -2, -3 ...)."""
    bases = [name if distro or Entry(name, name).kind != "image" else Path(name).name for name in names]
    return [Entry(name, directory, distro) for name, directory in zip(names, unique_names(bases), strict=True)]


@dataclass(frozen=True)
class Runtime:
    """One runtime of --runtime's list: the value for --nsc-runtime (None: the suite's default), and the
    directory of its reports under its entry's ("" where there is one runtime)."""

    value: str | None
    directory: str

    @property
    def name(self) -> str:
        """The runtime as the report names it: a bundled profile by its name, a profile file by its stem."""
        return Path(self.value).stem if self.value else "native"

    def args(self, suite_args: list[str], out: Path) -> list[str]:
        chosen = [] if self.value is None else [f"--runtime={self.value}"]
        return [*suite_args, *chosen, f"--report-dir={out}"]


def runtimes_of(values: list[str]) -> list[Runtime]:
    """--runtime's list: one run each, in a directory named after it where there are several."""
    if len(values) <= 1:
        return [Runtime(values[0] if values else None, "")]
    names = unique_names([Path(value).stem for value in values])
    return [Runtime(value, name) for value, name in zip(values, names, strict=True)]


def suite_command(suite_args: list[str], python: list[str] | None = None) -> list[str]:
    """The suite as `python` (by default this Python) runs it, its progress counted (console_output_style=count,
    unbuffered); `suite_args` name the report directory (Runtime.args)."""
    return [*(python or [sys.executable]), "-u", "-m", "nsconform", *suite_args, "-o", "console_output_style=count"]


def column_label(entry: Entry, runtime: Runtime, several: bool, doc: dict[str, Any]) -> str:
    """A matrix column's name: the entry and its kernel's release, and for a release or several runtimes the
    runtime and its version (the first version number its profile's `version` command printed: `runc 1.1.15`)."""
    release = str(doc["host"].get("kernel", "?"))
    label = release if entry.directory in ("", release) else f"{entry.directory} ({release})"
    if several or entry.distro:
        version = re.search(r"\d+\.\d+[\w.+~-]*", str(doc["runtime"].get("version") or ""))
        label += f" {runtime.name}" + (f" {version.group()}" if version else "")
    return label


class Audit:
    """One audit: the entries in turn, each with every runtime, then the matrix."""

    def __init__(
        self,
        suite_args: list[str],
        report_dir: Path,
        limit_s: float,
        runtimes: list[Runtime] | None = None,
        refresh: bool = False,
    ) -> None:
        self.suite_args = suite_args
        self.report_dir = report_dir
        self.limit_s = limit_s
        self.runtimes = runtimes or runtimes_of([])
        self.refresh = refresh  # --refresh: rebuild each release's root
        self.kvm: bool | None = None  # decided by trying, at the first VM
        self.vm_args: list[str] = []  # what the suite is given in a VM alone
        self.started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.missing: list[kcidb.Missing] = []  # the entries without a report, for kcidb.json

    def run_all(self, entries: list[Entry]) -> tuple[list[merge.Host], list[str]]:
        """Every entry in turn: the matrix's columns (the runs with a report) and the troubles met."""
        columns: list[merge.Host] = []
        troubles: list[str] = []
        several = len(self.runtimes) > 1
        for entry in entries:
            progress = runner.Progress(entry.name)
            base = self.report_dir / entry.directory
            for runtime in self.runtimes:  # a report left by an earlier run is not this run's
                for name in (*VIEWS, kcidb.FILE, LOG):
                    (base / runtime.directory / name).unlink(missing_ok=True)
            try:
                trouble = self.run_entry(entry, progress)
            except (EntryError, debian.FetchError, vm.VMError, roots.BuildError) as e:
                trouble = str(e)
            runs_troubles = [] if trouble is None else [trouble]
            for runtime in self.runtimes:
                out = base / runtime.directory
                doc = load(out / "conformance.json")
                said = f"{runtime.name}: " if several else ""
                if doc is not None:
                    label = column_label(entry, runtime, several, doc)
                    columns.append(merge.Host(label, str(out), doc))
                    bad = [f"{ns} {s['verdict']}" for ns, s in doc["summary"].items() if s["verdict"] in FAILING]
                    if bad:
                        runs_troubles.append(f"{said}verdicts " + ", ".join(bad))
                else:
                    why = trouble or f"its report {out / 'conformance.json'} cannot be read"
                    if trouble is None:
                        runs_troubles.append(f"{said}{why}")
                    name = str(Path(entry.directory, runtime.directory)) if runtime.directory else entry.directory
                    self.missing.append(kcidb.Missing(name or "host", why, kernel_of(entry), self.started))
            if runs_troubles:
                joined = "; ".join(runs_troubles)
                progress.say(f"error: {joined}")
                troubles.append(f"{entry.name}: {joined}")
        return columns, troubles

    def run_entry(self, entry: Entry, progress: runner.Progress) -> str | None:
        """Run one entry's runtimes into its directory; the trouble with it, if any, in a few words."""
        base = self.report_dir / entry.directory
        if entry.kind == "host":
            return self.run_on_host(base, progress)
        if entry.kind == "distro":
            return self.run_distro(entry, base, progress)
        found, image = self.vm_image(entry, progress)
        self.decide_kvm(found, image)
        args = [*self.suite_args, *self.vm_args]
        suites = [suite_command(r.args(args, Path(vm.GUEST_OUT, r.directory))) for r in self.runtimes]
        script = vm.script(suites, vm.kept_paths(), [r.name for r in self.runtimes])
        with vm.scratch(found) as (env, scratch):
            progress.say(f"booting {image.path} ({'KVM' if self.kvm else 'TCG'})")
            (scratch / "in").mkdir()
            argv = vm.command(found, image, self.kvm, base, script, brought=scratch / "in")
            return self.run_logged(argv, base, progress, env=env, pidns=True)

    def run_on_host(self, base: Path, progress: runner.Progress) -> str | None:
        troubles = []
        for runtime in self.runtimes:
            out = base / runtime.directory
            said = f" ({runtime.name})" if len(self.runtimes) > 1 else ""
            progress.say(f"running the suite on the host's kernel, {platform.release()}{said}")
            argv = suite_command(runtime.args(self.suite_args, out))
            trouble = self.run_logged(argv, out, progress, env=None, pidns=False)
            if trouble is not None:
                troubles.append(trouble)
        return "; ".join(troubles) or None

    def run_distro(self, entry: Entry, base: Path, progress: runner.Progress) -> str | None:
        """A release's root (built once, cached) booted on its own kernel: the running installation's code and
        any profile file given by path are brought in read-only, and each runtime's suite runs in turn."""
        found = vm.tools()
        built = roots.root(entry.name, self.refresh, progress.say)
        for runtime in self.runtimes:
            why = built.untested(runtime.name) if runtime.value == runtime.name else None
            if why is not None:
                progress.say(f"{runtime.name}: untested: {why} (its checks are skipped)")
        with roots.linked(built) as root, vm.scratch(found) as (env, scratch):
            image = vm.Image(root / "boot" / built.kernel.image.name, None, None)
            self.decide_kvm(found, image)
            code = roots.code(scratch / "in")
            suites = []
            for runtime in self.runtimes:
                value = runtime.value
                if value is not None and value != runtime.name:  # a profile file: brought in beside the code
                    if not Path(value).is_file():
                        raise EntryError(f"no runtime profile at {value}")
                    copied = code / "profiles" / runtime.directory / Path(value).name
                    copied.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(value, copied)
                    value = f"{vm.GUEST_IN}/{copied.relative_to(code)}"
                args = [*self.suite_args, *self.vm_args]
                guest = Runtime(value, runtime.directory).args(args, Path(vm.GUEST_OUT, runtime.directory))
                suites.append(suite_command(guest, roots.PYTHON))
            script = vm.script(suites, [], [r.name for r in self.runtimes])
            progress.say(f"booting {entry.name}'s {built.kernel.release} ({'KVM' if self.kvm else 'TCG'})")
            argv = vm.command(found, image, bool(self.kvm), base, script, brought=code, root=root)
            return self.run_logged(argv, base, progress, env=env, pidns=True)

    def decide_kvm(self, found: vm.Tools, image: vm.Image) -> None:
        """KVM or TCG, decided at the first VM; on TCG the probes' time limit is raised, unless given."""
        if self.kvm is None:
            self.kvm = vm.kvm_works(found, image, lambda line: print(f"nsconform: {line}", file=sys.stderr))
            given = any(arg.startswith(f"{PREFIX}probe-timeout=") for arg in self.suite_args)
            if not self.kvm and not given:
                self.vm_args = [f"{PREFIX}probe-timeout={TCG_PROBE_TIMEOUT_S}"]
                print(
                    f"nsconform: TCG: the probes may take {TCG_PROBE_TIMEOUT_S} s to answer in the VMs "
                    "(--probe-timeout to choose)",
                    file=sys.stderr,
                )

    def vm_image(self, entry: Entry, progress: runner.Progress) -> tuple[vm.Tools, vm.Image]:
        if entry.kind == "image":
            image = vm.image(Path(entry.name))
            return vm.tools(), image
        if entry.name not in debian.SERIES:
            raise EntryError(f"unknown Debian kernel series {entry.name}: known are {debian.describe_series()}")
        found = vm.tools()
        kernel = debian.fetch(entry.name, progress.say)
        return found, vm.Image(kernel.image, kernel.modules, kernel.config.parent if kernel.config else None)

    def run_logged(
        self, argv: list[str], out: Path, progress: runner.Progress, *, env: dict[str, str] | None, pidns: bool
    ) -> str | None:
        """Run argv, its output in out/console.log; the trouble with the run as a whole (a VM that did not boot,
        a run past its limit, no report at all, a non-zero exit), if any. Which runtime's report is missing,
        run_all says."""
        out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        boot_limit_s = vm.BOOT_LIMIT_S if pidns else None
        ended = runner.run(argv, out / LOG, self.limit_s, progress, env=env, pidns=pidns, boot_limit_s=boot_limit_s)
        took = f"{time.monotonic() - started:.0f} s"
        if pidns and (missing := vm.script_channel_missing(out / LOG)):
            return f"{missing}; see {out / LOG}"
        if ended.stopped == "boot":
            return f"did not boot within {vm.BOOT_LIMIT_S:.0f} s, see {out / LOG}"
        if ended.stopped == "limit":
            return f"stopped at the wall-clock limit ({self.limit_s:.0f} s; --{LIMIT.name}), see {out / LOG}"
        runs = [r.directory for r in self.runtimes] if pidns else [""]  # a VM runs them all, the host one
        if not any((out / run / "conformance.json").is_file() for run in runs):
            last = ended.tail[-1] if ended.tail else "no output"
            return f"no report (exit {ended.status} after {took}: {last}), see {out / LOG}"
        progress.say(f"done in {took}")
        if ended.status != 0:
            return f"the suite exited {ended.status}, see {out / LOG}"
        return None


def kernel_of(entry: Entry) -> kcidb.Kernel:
    """An entry's kernel as far as it is known without its report (for an entry that gave none): the host's,
    a Debian series' package as fetched, a release's as its root was built, or the image's file name."""
    if entry.kind == "host":
        uname = os.uname()
        return kcidb.Kernel(uname.release, uname.version, uname.machine).identified()
    if entry.kind == "distro" and (built := load(roots.cache_dir() / entry.name / roots.RECORD)) is not None:
        return kcidb.Kernel(built["kernel"]["release"], machine="x86_64", package_version=built["kernel"]["version"])
    fetched = load(debian.cache_dir() / entry.name / debian.RECORD) if entry.kind == "series" else None
    if fetched is not None:
        release = fetched["package"].removeprefix("linux-image-")
        return kcidb.Kernel(release, machine="x86_64", package_version=fetched["version"])
    return kcidb.Kernel(entry.directory)


def kcidb_options(suite_args: list[str]) -> kcidb.Options | None:
    """--kcidb and its options as the suite's runs take them (each entry's run writes its own kcidb.json)."""
    given: dict[str, Any] = {"nsc_kcidb": False, "nsc_kcidb_origin": None, "nsc_kcidb_commit": None}
    args = iter(suite_args)
    for arg in args:
        name, eq, value = arg.partition("=")
        dest = "nsc_" + name.removeprefix(PREFIX).replace("-", "_")
        if not name.startswith(PREFIX) or dest not in given:
            continue
        given[dest] = True if dest == "nsc_kcidb" else value if eq else next(args, "")
    return kcidb_from(SimpleNamespace(**given), prefix="--")  # as the nsconform command names them


def load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run(
    entries: list[str] | None,
    suite_args: list[str],
    report_dir: Path,
    limit: str | float | None = None,
    *,
    runtimes: list[str] | None = None,
    distros: bool = False,
    refresh: bool = False,
) -> int:
    """Each entry's runs (`entries` None: the host's alone, for several runtimes; each VM or host run stopped after
    `limit` seconds, by default --kernel-timeout's), then the merged matrix; 0 when every run has a report and
    no verdict is violated or error, else 1. What dead runs left is reaped first."""
    what = "--distros" if distros else "--kernels"
    try:
        limit_s = seconds(f"--{LIMIT.name}", LIMIT.default if limit is None else limit, KERNEL_TIMEOUT_S)
        kcidb_opts = kcidb_options(suite_args)
    except (InputError, kcidb.KcidbError) as e:
        print(f"nsconform: {e}", file=sys.stderr)
        return 4
    if entries is not None and not entries:
        print(f"nsconform: {what} lists nothing", file=sys.stderr)
        return 4
    report_dir = report_dir.resolve()
    try:
        check_writable(report_dir, "--report-dir")
    except ReportDirError as e:
        print(f"nsconform: {e}", file=sys.stderr)
        return 4
    for line in reaper.reap():  # a killed audit's VMs, scratch and half-built roots
        print(f"nsconform: reaped at start: {line}", file=sys.stderr)
    audit = Audit(suite_args, report_dir, limit_s, runtimes_of(runtimes or []), refresh)
    listed = [Entry("host", "")] if entries is None else entries_of(entries, distros)
    try:
        columns, troubles = audit.run_all(listed)
    except KeyboardInterrupt:  # each run has been stopped and cleaned up on the way out
        print(f"nsconform: {what} interrupted", file=sys.stderr)
        return 130
    merged: dict[str, str] = {}
    if columns:
        merged |= {"matrix.html": merge.render_html(columns), "matrix.md": merge.render_markdown(columns)}
    if kcidb_opts is not None:  # every kernel's results, and a MISS test for each entry without a report
        merged[kcidb.FILE] = kcidb.render([c.doc for c in columns], kcidb_opts, audit.missing)
    for name in (*merge.FILES, kcidb.FILE):  # an earlier run's matrix is not this run's
        if name not in merged:
            (report_dir / name).unlink(missing_ok=True)
    try:
        if merged:
            write_set(report_dir, merged)
    except ReportWriteError as e:
        print(f"nsconform: {e}", file=sys.stderr)
        return 4
    if columns:
        print(
            f"nsconform: compatibility matrix of {len(columns)} run(s): {report_dir / 'matrix.html'}, "
            f"{report_dir / 'matrix.md'}",
            file=sys.stderr,
        )
    if kcidb_opts is not None:
        print(f"nsconform: KCIDB results of {len(columns)} run(s): {report_dir / kcidb.FILE}", file=sys.stderr)
    kind = "release " if distros else "kernel " if entries is not None else ""
    for trouble in troubles:
        print(f"nsconform: {kind}{trouble}", file=sys.stderr)
    return 1 if troubles else 0
