"""`nsconform --kernels=LIST`: the same suite on several kernels, each in REPORT_DIR/<entry>/, merged into
one compatibility matrix, REPORT_DIR/matrix.html and matrix.md (docs/kernels.md).

An entry is `host` (the running kernel, the suite run directly), a Debian kernel series (kernels.debian)
or a kernel image's path; every entry but `host` boots in a VM (kernels.vm). Each entry's trouble (an
unknown series, a missing image or tool, a kernel that does not boot, a run past its wall-clock limit)
is said for that entry, and the others still run.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nsconform.inputs import KERNEL_TIMEOUT_S, InputError, seconds
from nsconform.kernels import debian, runner, vm
from nsconform.report import kcidb, merge
from nsconform.report.writing import VIEWS, ReportDirError, ReportWriteError, check_writable, write_set
from nsconform.settings import PREFIX, kcidb_from, option

LIMIT = option("kernel-timeout")
LOG = "console.log"  # beside each entry's reports: the run's whole output
FAILING = ("violated", "error")


class EntryError(RuntimeError):
    """An entry of --kernels that cannot be run."""


@dataclass(frozen=True)
class Entry:
    name: str  # as listed
    directory: str  # its report directory's name: the entry, or the image's file name

    @property
    def kind(self) -> str:
        if self.name == "host":
            return "host"
        if re.fullmatch(r"\d+\.\d+", self.name):
            return "series"
        return "image"


def entries_of(names: list[str]) -> list[Entry]:
    """The entries in order, each with a report directory of its own (a repeated name gets -2, -3 ...)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        base = Path(name).name if Entry(name, name).kind == "image" else name
        seen[base] = seen.get(base, 0) + 1
        out.append(Entry(name, base if seen[base] == 1 else f"{base}-{seen[base]}"))
    return out


def suite_command(suite_args: list[str], out: Path) -> list[str]:
    """The suite as this Python runs it, reports into `out`, its progress counted (console_output_style=count,
    unbuffered)."""
    return [
        sys.executable,
        "-u",
        "-m",
        "nsconform",
        *suite_args,
        "-o",
        "console_output_style=count",
        f"--report-dir={out}",
    ]


class Audit:
    """One --kernels run: the entries in turn, then the matrix."""

    def __init__(self, suite_args: list[str], report_dir: Path, limit_s: float) -> None:
        self.suite_args = suite_args
        self.report_dir = report_dir
        self.limit_s = limit_s
        self.kvm: bool | None = None  # decided by trying, at the first VM
        self.started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.missing: list[kcidb.Missing] = []  # the entries without a report, for kcidb.json

    def run_all(self, entries: list[Entry]) -> tuple[list[merge.Host], list[str]]:
        """Every entry in turn: the matrix's columns (the entries with a report) and the troubles met."""
        columns: list[merge.Host] = []
        troubles: list[str] = []
        for entry in entries:
            progress = runner.Progress(entry.name)
            out = self.report_dir / entry.directory
            for name in (*VIEWS, kcidb.FILE, LOG):  # a report left by an earlier run is not this run's
                (out / name).unlink(missing_ok=True)
            try:
                trouble = self.run_entry(entry, progress)
            except (EntryError, debian.FetchError, vm.VMError) as e:
                trouble = str(e)
            doc = load(out / "conformance.json")
            if doc is not None:
                release = str(doc["host"].get("kernel", "?"))
                label = entry.directory if release == entry.directory else f"{entry.directory} ({release})"
                columns.append(merge.Host(label, str(out), doc))
                bad = [f"{ns} {s['verdict']}" for ns, s in doc["summary"].items() if s["verdict"] in FAILING]
                if bad:
                    trouble = "; ".join(filter(None, [trouble, "verdicts " + ", ".join(bad)]))
            elif trouble is None:
                trouble = f"its report {out / 'conformance.json'} cannot be read"
            if doc is None:
                self.missing.append(kcidb.Missing(entry.directory, str(trouble), kernel_of(entry), self.started))
            if trouble is not None:
                progress.say(f"error: {trouble}")
                troubles.append(f"{entry.name}: {trouble}")
        return columns, troubles

    def run_entry(self, entry: Entry, progress: runner.Progress) -> str | None:
        """Run one entry into its directory; the trouble with it, if any, in a few words."""
        out = self.report_dir / entry.directory
        if entry.kind == "host":
            progress.say(f"running the suite on the host's kernel, {platform.release()}")
            return self.run_logged(suite_command(self.suite_args, out), out, progress, env=None, pidns=False)
        found, image = self.vm_image(entry, progress)
        if self.kvm is None:
            self.kvm = vm.kvm_works(found, image, lambda line: print(f"nsconform: {line}", file=sys.stderr))
        script = vm.script(suite_command(self.suite_args, Path(vm.GUEST_OUT)), vm.kept_paths())
        with vm.scratch(found) as (env, _):
            progress.say(f"booting {image.path} ({'KVM' if self.kvm else 'TCG'})")
            argv = vm.command(found, image, self.kvm, out, script)
            return self.run_logged(argv, out, progress, env=env, pidns=True)

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
        if not (out / "conformance.json").is_file():
            last = ended.tail[-1] if ended.tail else "no output"
            return f"no report (exit {ended.status} after {took}: {last}), see {out / LOG}"
        progress.say(f"done in {took}")
        if ended.status != 0:
            return f"the suite exited {ended.status}, see {out / LOG}"
        return None


def kernel_of(entry: Entry) -> kcidb.Kernel:
    """An entry's kernel as far as it is known without its report (for an entry that gave none): the host's,
    a Debian series' package as fetched, or the image's file name."""
    if entry.kind == "host":
        uname = os.uname()
        return kcidb.Kernel(uname.release, uname.version, uname.machine).identified()
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


def run(entries: list[str], suite_args: list[str], report_dir: Path, limit: str | float | None = None) -> int:
    """Each entry's run (each stopped after `limit` seconds, by default --kernel-timeout's), then the merged
    matrix; 0 when every kernel has a report and no verdict is violated or error, else 1."""
    try:
        limit_s = seconds(f"--{LIMIT.name}", LIMIT.default if limit is None else limit, KERNEL_TIMEOUT_S)
        kcidb_opts = kcidb_options(suite_args)
    except (InputError, kcidb.KcidbError) as e:
        print(f"nsconform: {e}", file=sys.stderr)
        return 4
    if not entries:
        print("nsconform: --kernels lists no kernel", file=sys.stderr)
        return 4
    report_dir = report_dir.resolve()
    try:
        check_writable(report_dir, "--report-dir")
    except ReportDirError as e:
        print(f"nsconform: {e}", file=sys.stderr)
        return 4
    audit = Audit(suite_args, report_dir, limit_s)
    try:
        columns, troubles = audit.run_all(entries_of(entries))
    except KeyboardInterrupt:  # each run has been stopped and cleaned up on the way out
        print("nsconform: --kernels interrupted", file=sys.stderr)
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
            f"nsconform: compatibility matrix of {len(columns)} kernel(s): {report_dir / 'matrix.html'}, "
            f"{report_dir / 'matrix.md'}",
            file=sys.stderr,
        )
    if kcidb_opts is not None:
        print(f"nsconform: KCIDB results of {len(entries)} kernel(s): {report_dir / kcidb.FILE}", file=sys.stderr)
    for trouble in troubles:
        print(f"nsconform: kernel {trouble}", file=sys.stderr)
    return 1 if troubles else 0
