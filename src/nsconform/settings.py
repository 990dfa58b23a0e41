"""nsconform's options (`--nsc-*` in pytest, the short names in the `nsconform` command), checked once per session."""

from __future__ import annotations

import argparse
import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nsconform import areas as area_names
from nsconform import namespaces as ns
from nsconform.inputs import KERNEL_TIMEOUT_S, PROBE_TIMEOUT_S, InputError, seconds
from nsconform.locations import CONFIG
from nsconform.runtimes.runtime import Runtime, RuntimeSpecError, declared_hardening, resolve
from nsconform.sandbox.attach import AttachError, AttachRuntime, Target

if TYPE_CHECKING:
    from nsconform.report import kcidb

SETTINGS = pytest.StashKey["Settings"]()
PREFIX = "--nsc-"


@dataclass(frozen=True)
class Option:
    """One of nsconform's options: `--nsc-NAME` in pytest, `--NAME` in the `nsconform` command."""

    name: str
    help: str
    metavar: str | None = None  # None: a flag, which takes no value
    default: Any = None
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] = str
    command_only: bool = False  # an option of the `nsconform` command alone, which pytest never sees

    @property
    def dest(self) -> str:
        return "nsc_" + self.name.replace("-", "_")


OPTIONS = (
    Option(
        "runtime",
        "runtime under test: native, a bundled profile name, or a profile file (default: native); the nsconform "
        "command takes a comma list: one run each, merged into one matrix",
        "NAME|PATH",
        "native",
    ),
    Option(
        "attach",
        "audit the namespaces of running process PID (nsenter-style): the probe joins them; what is claimed "
        "comes from the runtime's profile (isolates), else from the namespaces that are not the host's",
        "PID",
    ),
    Option(
        "namespaces",
        f"comma list of namespaces to check (default: {','.join(ns.DEFAULT)}; known: {','.join(ns.ALL)})",
        "LIST",
        ",".join(ns.DEFAULT),
    ),
    Option(
        "areas",
        f"comma list of hardening areas to judge in the runtime's as-shipped sandbox, or none (default: every area "
        f"the runtime's profile declares in [hardening]; known: {','.join(area_names.ALL)})",
        "LIST",
    ),
    Option(
        "combinations",
        "all subsets, singles (each alone, none and all) or declared (the profile's isolates); "
        "default: all where the runtime can build any combination, else declared",
        "MODE",
        choices=ns.MODES,
    ),
    Option("report-dir", "where reports are written (default: reports/)", "DIR", "reports"),
    Option(
        "baseline",
        "conformance.json of an earlier run: fail on any result that passed there and does not now",
        "FILE",
    ),
    Option("no-host-audit", "do not fail the session when the host differs after it from before it"),
    Option(
        "probe-timeout",
        f"seconds a probe may take before its sandbox is killed and the result is error, at most "
        f"{PROBE_TIMEOUT_S:g} (default: 10)",
        "S",
        "10",
    ),
    Option(
        "kernels",
        "run the suite once per kernel of a comma list: host, a Debian kernel series (5.10, 6.1, 6.12) or a "
        "kernel image's path, each in a VM but host; reports in REPORT_DIR/<entry>/, merged into "
        "REPORT_DIR/matrix.html and matrix.md",
        "LIST",
        command_only=True,
    ),
    Option(
        "distros",
        "run the suite once per Debian release of a comma list (bookworm, trixie, forky), each on its own kernel "
        "with its own runtimes in a VM, on a root built once and cached; reports in REPORT_DIR/<release>/, merged "
        "into REPORT_DIR/matrix.html and matrix.md",
        "LIST",
        command_only=True,
    ),
    Option("refresh", "with --distros: build each release's root again rather than use the cache", command_only=True),
    Option(
        "kernel-timeout",
        f"with --kernels or --distros: the wall-clock limit of each VM's run, in seconds, at most {KERNEL_TIMEOUT_S:g} "
        "(default: 3600)",
        "S",
        "3600",
        command_only=True,
    ),
    Option("kcidb", "also write kcidb.json, the results in KernelCI's KCIDB v5.3 format (docs/reports.md)"),
    Option("kcidb-origin", "the origin (CI system) named in kcidb.json's ids, [a-z0-9_]+ (default: nsconform)", "NAME"),
    Option("kcidb-commit", "git_commit_hash of the kernel under test in kcidb.json (a kernel built from git)", "HASH"),
)


def option(name: str) -> Option:
    """The option of the table called `name`."""
    return next(o for o in OPTIONS if o.name == name)


AS_COMMAND = PREFIX + "as-command"  # given by the `nsconform` command: messages name its options


@dataclass(frozen=True)
class Settings:
    runtime: Runtime
    namespaces: tuple[str, ...]
    mode: str
    combinations: tuple[ns.Combination, ...]
    report_dir: Path
    baseline: Path | None
    probe_timeout: float
    areas: tuple[str, ...] = ()  # the hardening areas judged (nsconform.areas)
    kcidb: kcidb.Options | None = None  # --nsc-kcidb: kcidb.json beside the reports


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("nsconform", "namespace isolation conformance (nsconform)")
    group.addoption(AS_COMMAND, dest="nsc_as_command", action="store_true", help=argparse.SUPPRESS)
    for option in OPTIONS:
        if option.command_only:
            continue
        if option.metavar is None:
            group.addoption(PREFIX + option.name, dest=option.dest, action="store_true", help=option.help)
        else:
            group.addoption(
                PREFIX + option.name,
                dest=option.dest,
                default=option.default,
                metavar=option.metavar,
                choices=option.choices,
                type=option.type,
                help=option.help,
            )


def from_config(config: pytest.Config) -> Settings:
    """Check every option; a bad one is a usage error before anything runs."""
    opt = config.option
    here = config.invocation_params.dir
    try:
        namespaces = ns.parse_list(opt.nsc_namespaces)
        runtime = resolve(opt.nsc_runtime, here)
        if opt.nsc_attach is not None:
            runtime = attach_to(opt.nsc_attach, None if opt.nsc_runtime == "native" else runtime)
            if opt.nsc_combinations not in (None, "declared"):
                raise ns.NamespaceError(
                    f"--nsc-combinations {opt.nsc_combinations}: --nsc-attach audits one set of namespaces, "
                    "the target's; use declared"
                )
        mode = opt.nsc_combinations or ("all" if runtime.any_combination else "declared")
        if mode != "declared" and not runtime.any_combination:
            raise ns.NamespaceError(
                f"--nsc-combinations {mode}: runtime {runtime.name} runs one fixed command; use declared"
            )
        # what the runtime builds of each: a bundle always isolates mnt, a matrix only what it has flags for
        built = (runtime.buildable(combo) for combo in ns.matrix(namespaces, mode, runtime.isolates))
        combos = list({ns.combo_id(combo): combo for combo in built}.values())
        areas = declared_hardening(runtime).areas if opt.nsc_areas is None else area_names.parse_list(opt.nsc_areas)
    except (ns.NamespaceError, RuntimeSpecError, AttachError, area_names.AreaError) as e:
        raise pytest.UsageError(str(e)) from None
    misread_rootdir(config)
    if runtime.name == "native" and (why := runtime.unavailable()):
        raise pytest.UsageError(why)  # the harness's own runtime cannot work here at all
    try:
        probe_timeout = seconds("--nsc-probe-timeout", opt.nsc_probe_timeout, PROBE_TIMEOUT_S)
    except InputError as e:
        raise pytest.UsageError(str(e)) from None
    baseline = Path(here, opt.nsc_baseline) if opt.nsc_baseline else None  # read by the controller at once
    try:
        kcidb_options = kcidb_from(opt)
    except ValueError as e:  # kcidb.KcidbError, the only one it raises
        raise pytest.UsageError(str(e)) from None
    return Settings(
        runtime=runtime,
        namespaces=namespaces,
        mode=mode,
        combinations=tuple(combos),
        report_dir=Path(here, opt.nsc_report_dir),
        baseline=baseline,
        probe_timeout=probe_timeout,
        areas=areas,
        kcidb=kcidb_options,
    )


def kcidb_from(opt: Any, prefix: str = PREFIX) -> kcidb.Options | None:
    """--nsc-kcidb's options, checked (errors name them with `prefix`); --nsc-kcidb-origin or --nsc-kcidb-commit
    alone is a mistake, said. The writer is imported only then: a run without them does not load it."""
    given = [name for name in ("kcidb-origin", "kcidb-commit") if getattr(opt, f"nsc_{name.replace('-', '_')}")]
    if not opt.nsc_kcidb and not given:
        return None
    from nsconform.report import kcidb

    if not opt.nsc_kcidb:
        raise kcidb.KcidbError(f"{prefix}{given[0]} is for kcidb.json: add {prefix}kcidb")
    return kcidb.options(opt.nsc_kcidb_origin, opt.nsc_kcidb_commit, prefix)


def as_written(config: pytest.Config, message: str) -> str:
    """A message that names options as the user wrote them: run by the `nsconform` command, `--attach` rather
    than `--nsc-attach`."""
    if not config.getoption("nsc_as_command", False):
        return message
    names = "|".join(re.escape(option.name) for option in OPTIONS)
    return re.sub(rf"{re.escape(PREFIX)}({names})\b(?!-)", r"--\1", message)


def attach_to(value: str, base: Runtime | None) -> AttachRuntime:
    """--nsc-attach PID, checked: the process exists and this user may read (so enter) its namespaces."""
    try:
        pid = int(value)
    except ValueError:
        raise AttachError(f"--nsc-attach {value}: not a process id (a positive integer)") from None
    return AttachRuntime(target=Target.find(pid), base=base)


def misread_rootdir(config: pytest.Config) -> None:
    """pytest picks its rootdir (and so its configuration) before plugins add options: in `--nsc-report-dir DIR`
    it takes DIR, if it exists, for a path to test, and may look for its configuration there. A value
    written after a space that names an existing path outside the rootdir, or that led pytest to the
    package's own configuration, may so have led it elsewhere than the run's own arguments: a usage error
    naming the option to write with '='."""
    if hasattr(config, "workerinput"):
        return  # an xdist worker is handed the controller's rootdir, which the controller checked
    if config.getoption("rootdir") or config.getoption("inifilename"):
        return  # given, not chosen from the arguments
    here = config.invocation_params.dir
    names = {PREFIX + option.name for option in OPTIONS if option.metavar is not None}
    # the package's own configuration, found from a path in the package (a bundled profile), is never the
    # one a plain pytest run means: only the `nsconform` command runs on it, and names it with -c
    packaged = config.inipath is not None and Path(config.inipath).resolve() == CONFIG.resolve()
    spaced = [
        f"{name}={value}"
        for name, value in itertools.pairwise(config.invocation_params.args)
        if name in names
        and os.path.exists(path := os.path.join(here, value))
        and (config.inipath is None or packaged or not inside(path, config.rootpath))
    ]
    if spaced:
        raise pytest.UsageError(
            f"an option value after a space names a path, which pytest may have taken for a path to test when it "
            f"chose its rootdir ({config.rootpath}) and configuration ({config.inipath or 'none'}); "
            f"write {', '.join(spaced)}"
        )


def inside(path: str, directory: Path) -> bool:
    return Path(path).resolve().is_relative_to(directory.resolve())


def rootless() -> bool:
    return os.geteuid() != 0
