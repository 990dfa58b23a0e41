"""The hardening areas (--nsc-areas): what a namespaced root can still reach beyond its namespaces.

Each area is judged in the runtime's "as shipped" sandbox (nsconform.fixtures.shipped), against what the
runtime's profile declares in its [hardening] table (nsconform.runtimes.hardening). docs/hardening.md.
"""

from __future__ import annotations

# The areas, in the order the reports show them (after the namespaces).
ALL = ("caps", "seccomp", "paths", "devices", "knobs", "sockets")


class AreaError(ValueError):
    """An area list names something that is not an area."""


def parse_list(text: str, *, what: str = "--nsc-areas") -> tuple[str, ...]:
    """A comma list of area names, in ALL's order, repeats dropped; `none` (or an empty list) selects none."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["none"]:
        return ()
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise AreaError(f"{what}: unknown area {', '.join(unknown)} (known: {', '.join(ALL)}, or none)")
    return tuple(area for area in ALL if area in names)
