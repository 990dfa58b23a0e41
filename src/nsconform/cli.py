"""The `nsconform` command: the conformance suite from any directory, with the installed package alone.

    nsconform [-n auto] [--runtime NAME|PATH] [--namespaces LIST] [--combinations MODE] [--report-dir DIR]
              [--baseline FILE] [--probe-timeout S] [--attach PID] [--no-host-audit] [--kernels LIST]
              [--kcidb [--kcidb-origin NAME] [--kcidb-commit HASH]]
              [any pytest argument ...]

It runs pytest on the package's own configuration (its pytest.ini, with the package's directory for
rootdir), never the working directory's; nsconform's options take their short names here (with `=` or a
space) and become pytest's `--nsc-*`; every other argument goes to pytest as it is. Reports land in
`reports/` under the working directory unless `--report-dir` says otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from nsconform.locations import CONFIG, checks_dir
from nsconform.settings import OPTIONS, PREFIX


class CommandError(ValueError):
    """The command line cannot be read: a short option without its value."""


def translate(argv: Sequence[str]) -> tuple[list[str], Path, str | None]:
    """nsconform's short options as pytest's `--nsc-*` (each written with '='), the rest as given, but for
    the report directory, which comes apart (default: reports/ under the working directory); and the
    value of `--kernels`, if any."""
    by_name = {f"--{option.name}": option for option in OPTIONS}
    out: list[str] = []
    kernels: str | None = None
    report_dir = Path.cwd() / "reports"
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name == "--kernels":
            kernels = value if eq else next(args, None)
            if kernels is None:
                raise CommandError("--kernels needs a value: a comma list of host, a Debian series, image paths")
            continue
        option = by_name.get(name)
        if option is None:
            out.append(arg)
        elif option.metavar is None:
            out.append(PREFIX + option.name)
        else:
            if not eq:
                value = next(args, None)
                if value is None:
                    raise CommandError(f"{name} needs a value ({option.metavar})")
            if option.name == "report-dir":
                report_dir = Path.cwd() / value
            else:
                out.append(f"{PREFIX}{option.name}={value}")
    return out, report_dir, kernels


def pytest_args(translated: Sequence[str], report_dir: Path) -> list[str]:
    """The whole pytest command line: the package's configuration and rootdir, the options, then the checks."""
    checks = checks_dir()
    config = ["-c", str(CONFIG), "--rootdir", str(checks.parent)]
    return [*config, *translated, f"{PREFIX}report-dir={report_dir}", str(checks)]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        translated, report_dir, kernels = translate(sys.argv[1:] if argv is None else argv)
    except CommandError as e:
        print(f"nsconform: {e}", file=sys.stderr)
        return 4  # pytest's usage error
    if kernels is not None:
        from nsconform.kernels import run

        return run([entry for entry in kernels.split(",") if entry], translated, report_dir)
    import pytest

    return int(pytest.main(pytest_args(translated, report_dir)))


if __name__ == "__main__":
    sys.exit(main())
