"""Profiles written in the tests: runtimes that keep or break what they declare, built from TOML text."""

from __future__ import annotations

from pathlib import Path

from nsconform.runtimes.profiles import parse
from nsconform.runtimes.runtime import ProfileRuntime

DECLARED_HOSTNAME = "nsconform-declared"


def profile_runtime(text: str, name: str) -> ProfileRuntime:
    """The runtime of profile `text`, as if read from a file `name`.toml in the tests."""
    return ProfileRuntime(parse(text, Path(__file__).with_name(f"{name}.toml")))


def hostname_runtime(*, sets_it: bool) -> ProfileRuntime:
    """unshare with its own UTS namespace that declares a hostname, and sets it only if `sets_it`."""
    script = f'hostname {DECLARED_HOSTNAME} && exec "$@"' if sets_it else 'exec "$@"'
    name = "hostname-" + ("set" if sets_it else "unset")
    return profile_runtime(
        f"""
name = "{name}"
requires = ["unshare", "hostname"]
command = ["unshare", "--uts", "--fork", "--kill-child", "--", "sh", "-c", '{script}', "sh"]
isolates = ["uts"]
[expect]
hostname = "{DECLARED_HOSTNAME}"
""",
        name,
    )


def unshare_fixed(*, claims: list[str], flags: list[str], name: str) -> str:
    """A fixed-form unshare profile that claims `claims` and passes `flags`."""
    return f"""
name = "{name}"
requires = ["unshare"]
command = {["unshare", "--fork", "--kill-child", *flags, "--"]!r}
isolates = {claims!r}
""".replace("'", '"')
