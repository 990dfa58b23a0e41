"""The `nsconform` command: the conformance suite from any directory, with the installed package alone.

    nsconform [-n auto] [--runtime NAME|PATH] [--namespaces LIST] [--combinations MODE] [--report-dir DIR]
              [--baseline FILE] [--probe-timeout S] [--attach PID] [--no-host-audit] [--kernels LIST]
              [--distros LIST [--refresh]] [--kcidb [--kcidb-origin NAME] [--kcidb-commit HASH]]
              [any pytest argument ...]

It runs pytest on the package's own configuration (its pytest.ini, with the package's directory for
rootdir), never the working directory's; nsconform's options (nsconform.settings.OPTIONS) take their short
names here (with `=` or a space) and become pytest's `--nsc-*`; every other argument goes to pytest as it
is. Reports land in `reports/` under the working directory unless `--report-dir` says otherwise.
`nsconform --help` lists nsconform's own options; `pytest --help` the rest.

`--runtime` takes a comma list: one run per runtime, each in REPORT_DIR/<runtime>/, merged into one matrix;
`--kernels` and `--distros` run the suite on kernels and Debian releases (nsconform.kernels).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nsconform.locations import CONFIG, checks_dir
from nsconform.settings import AS_COMMAND, OPTIONS, PREFIX

HELP = ("-h", "--help")


class CommandError(ValueError):
    """The command line cannot be read: a short option without its value."""


@dataclass
class Command:
    """A command line read: pytest's arguments, the report directory, and the command's own options' values."""

    pytest_args: list[str]
    report_dir: Path
    own: dict[str, str] = field(default_factory=dict)  # options of the command alone (--kernels ...), by name
    runtimes: list[str] = field(default_factory=list)  # --runtime's comma list

    def pytest_options(self) -> list[str]:
        """pytest's arguments with the runtime, for a single run."""
        return [*self.pytest_args, *(f"{PREFIX}runtime={runtime}" for runtime in self.runtimes)]


def translate(argv: Sequence[str]) -> Command:
    """nsconform's short options as pytest's `--nsc-*` (each written with '='), the rest as given, but for
    the report directory, which comes apart (default: reports/ under the working directory), and the
    command's own options (command_only in the table)."""
    by_name = {f"--{option.name}": option for option in OPTIONS}
    command = Command([], Path.cwd() / "reports")
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        option = by_name.get(name)
        if option is None:
            command.pytest_args.append(arg)
            continue
        if option.metavar is None:
            if option.command_only:
                command.own[option.name] = ""
            else:
                command.pytest_args.append(PREFIX + option.name)
            continue
        if not eq:
            value = next(args, None)
            if value is None:
                raise CommandError(f"{name} needs a value ({option.metavar})")
        if option.name == "report-dir":
            command.report_dir = Path.cwd() / value
        elif option.name == "runtime":
            command.runtimes = [entry for entry in value.split(",") if entry]
        elif option.command_only:
            command.own[option.name] = value  # checked where it is used (nsconform.kernels)
        else:
            command.pytest_args.append(f"{PREFIX}{option.name}={value}")
    return command


def pytest_args(translated: Sequence[str], report_dir: Path) -> list[str]:
    """The whole pytest command line: the package's configuration and rootdir, the options, then the checks."""
    checks = checks_dir()
    config = ["-c", str(CONFIG), "--rootdir", str(checks.parent), AS_COMMAND]
    return [*config, *translated, f"{PREFIX}report-dir={report_dir}", str(checks)]


def help_text() -> str:
    """nsconform's own options, from the one table of them, and where the rest are described."""
    parser = argparse.ArgumentParser(
        prog="nsconform",
        usage="nsconform [nsconform's options] [pytest's options, such as -n auto or -k hostname]",
        description="Run nsconform's conformance suite (as root, or rootless) on the package's own configuration; "
        "reports land in reports/ under the working directory. Each option takes its value with '=' or after "
        "a space; in pytest it is --nsc-NAME.",
        epilog="Every other argument goes to pytest as it is: see `pytest --help` (in nsconform's virtualenv, "
        ".venv/bin/pytest --help) for them. Documentation: docs/running.md.",
        add_help=False,
    )
    parser.add_argument(*HELP, action="store_true", help="show this help and exit")
    for option in OPTIONS:
        if option.metavar is None:
            parser.add_argument(f"--{option.name}", action="store_true", help=option.help)
        else:
            parser.add_argument(f"--{option.name}", metavar=option.metavar, help=option.help.replace("%", "%%"))
    return parser.format_help()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in HELP for arg in args[: args.index("--") if "--" in args else len(args)]):
        print(help_text(), end="")
        return 0
    try:
        command = translate(args)
    except CommandError as e:
        print(f"nsconform: {e}", file=sys.stderr)
        return 4  # pytest's usage error
    audits = [name for name in ("kernels", "distros") if name in command.own]
    if len(audits) > 1:
        print("nsconform: --kernels and --distros cannot be given together", file=sys.stderr)
        return 4
    if "refresh" in command.own and "distros" not in command.own:
        print("nsconform: --refresh rebuilds the roots of --distros: give --distros too", file=sys.stderr)
        return 4
    if audits or len(command.runtimes) > 1:
        from nsconform.kernels import run

        entries = [entry for entry in command.own[audits[0]].split(",") if entry] if audits else None
        return run(
            entries,
            command.pytest_args,
            command.report_dir,
            command.own.get("kernel-timeout"),
            runtimes=command.runtimes,
            distros=audits == ["distros"],
            refresh="refresh" in command.own,
        )
    if "kernel-timeout" in command.own:
        print("nsconform: --kernel-timeout applies to --kernels and --distros runs only", file=sys.stderr)
        return 4
    import pytest

    return int(pytest.main(pytest_args(command.pytest_options(), command.report_dir)))


if __name__ == "__main__":
    sys.exit(main())
