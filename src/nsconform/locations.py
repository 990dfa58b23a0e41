"""Where the installed package keeps what it ships: its pytest configuration and its checks."""

from __future__ import annotations

from functools import cache
from importlib.util import find_spec
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CONFIG = PACKAGE / "pytest.ini"  # the `nsconform` command's configuration


@cache
def checks_dir() -> Path:
    """The checks' folder (the package's, or the checkout's in an editable install), found without importing
    the checks: pytest imports each check module, once."""
    spec = find_spec("nsconform.isolation_checks")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("nsconform.isolation_checks: the installed package has no checks")
    return Path(next(iter(spec.submodule_search_locations))).resolve()
