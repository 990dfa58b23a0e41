"""The `nsconform` command: the conformance suite from any directory, with the installed package alone.

    nsconform [-n auto] [--runtime NAME|PATH] [--namespaces LIST] [--combinations MODE] [--report-dir DIR]
              [--baseline FILE] [--probe-timeout S] [--attach PID] [--no-host-audit] [--kernels LIST]
              [--distros LIST [--refresh]] [any pytest argument ...]

It runs pytest on the package's own configuration (its pytest.ini, with the package's directory for
rootdir), never the working directory's; nsconform's options take their short names here (with `=` or a
space) and become pytest's `--nsc-*`; every other argument goes to pytest as it is. Reports land in
`reports/` under the working directory unless `--report-dir` says otherwise.

`--runtime` takes a comma list: one run per runtime, each in REPORT_DIR/<runtime>/, merged into one matrix;
`--kernels` and `--distros` run the suite on kernels and Debian releases (nsconform.kernels).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nsconform.locations import CONFIG, checks_dir
from nsconform.settings import OPTIONS, PREFIX


class CommandError(ValueError):
    """The command line cannot be read: a short option without its value."""


# The console script's own options, which pytest never sees: what each lists.
AUDITS = {
    "--kernels": "a comma list of host, a Debian series, image paths",
    "--distros": "a comma list of Debian releases",
}


@dataclass
class Command:
    """The command line, read: pytest's arguments, and what the console script does itself."""

    args: list[str] = field(default_factory=list)  # nsconform's options as pytest's --nsc-*, the rest as given
    report_dir: Path = field(default_factory=lambda: Path.cwd() / "reports")
    runtimes: list[str] = field(default_factory=list)  # --runtime's comma list
    audits: dict[str, list[str]] = field(default_factory=dict)  # --kernels, --distros: their entries
    refresh: bool = False  # --distros: rebuild each release's root

    def pytest_options(self) -> list[str]:
        """args with the runtime, for a single run."""
        return [*self.args, *(f"{PREFIX}runtime={r}" for r in self.runtimes)]


def translate(argv: Sequence[str]) -> Command:
    """nsconform's short options as pytest's `--nsc-*` (each written with '='), the rest as given, but for
    the report directory (default: reports/ under the working directory), the runtimes, and the lists of
    --kernels and --distros, which come apart."""
    by_name = {f"--{option.name}": option for option in OPTIONS}
    command = Command()
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name == "--refresh" and not eq:
            command.refresh = True
            continue
        if name in AUDITS:
            listed = value if eq else next(args, None)
            if listed is None:
                raise CommandError(f"{name} needs a value: {AUDITS[name]}")
            command.audits[name] = [entry for entry in listed.split(",") if entry]
            continue
        option = by_name.get(name)
        if option is None:
            command.args.append(arg)
        elif option.metavar is None:
            command.args.append(PREFIX + option.name)
        else:
            if not eq:
                value = next(args, None)
                if value is None:
                    raise CommandError(f"{name} needs a value ({option.metavar})")
            if option.name == "report-dir":
                command.report_dir = Path.cwd() / value
            elif option.name == "runtime":
                command.runtimes = [entry for entry in value.split(",") if entry]
            else:
                command.args.append(f"{PREFIX}{option.name}={value}")
    if len(command.audits) > 1:
        raise CommandError("--kernels and --distros cannot be given together")
    if command.refresh and "--distros" not in command.audits:
        raise CommandError("--refresh rebuilds the roots of --distros: give --distros too")
    return command


def pytest_args(translated: Sequence[str], report_dir: Path) -> list[str]:
    """The whole pytest command line: the package's configuration and rootdir, the options, then the checks."""
    checks = checks_dir()
    config = ["-c", str(CONFIG), "--rootdir", str(checks.parent)]
    return [*config, *translated, f"{PREFIX}report-dir={report_dir}", str(checks)]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        command = translate(sys.argv[1:] if argv is None else argv)
    except CommandError as e:
        print(f"nsconform: {e}", file=sys.stderr)
        return 4  # pytest's usage error
    if command.audits or len(command.runtimes) > 1:
        from nsconform.kernels import run

        (what, entries), *_ = command.audits.items() or [("", None)]
        return run(
            entries,
            command.args,
            command.report_dir,
            runtimes=command.runtimes,
            distros=what == "--distros",
            refresh=command.refresh,
        )
    import pytest

    return int(pytest.main(pytest_args(command.pytest_options(), command.report_dir)))


if __name__ == "__main__":
    sys.exit(main())
