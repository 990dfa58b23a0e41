"""Time namespace: CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets that apply inside only.

The module is `isolation_checks.time`; it cannot shadow the standard library's `time`, which is
built into the interpreter (sys.builtin_module_names) and so found before any file.
"""

from __future__ import annotations

import pytest

from nsconform.escapes import (
    ATTACH_PREMISE,
    HANDLES,
    NAMESPACE_FILES,
    expect_no_foreign_namespace_file,
    expect_no_inherited_handle,
)
from nsconform.guarantees import Verdict, guarantee
from nsconform.host.observe import Host
from nsconform.sandbox.sandbox import Sandbox

CLOCKS = ("monotonic", "boottime")


def bracket(sandbox: Sandbox, host: Host) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """The host's clocks, the sandbox's, the host's again: the sandbox read between the two host reads."""
    before = host.probe("clocks")
    inside = sandbox.probe("clocks")
    after = host.probe("clocks")
    return before, inside, after


def readings(clock: str, before: dict[str, int], inside: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        f"{clock} host before": before[clock],
        f"{clock} inside": inside[clock],
        f"{clock} host after": after[clock],
    }


@guarantee("time", "any", references=["time_namespaces(7)"])
def test_namespace_identity(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox has a time namespace of its own exactly when time is isolated."""
    verdict.identity("time", sandbox, host)


@guarantee("time", "isolated")
def test_clock_offsets_private(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The clock offsets of the sandbox's time namespace apply inside only: its clocks read the host's plus them."""
    # 1. ASSERT an own time namespace; 2. read its offsets inside (/proc/self/timens_offsets), skip if none
    # 3. host clock, sandbox clock, host clock: EXPECT inside minus offset between the two host readings
    #    (the offset applies inside) and the host's second reading within one offset of its first
    #    (the host's clock did not move by it)
    verdict.require_own_namespace("time", sandbox, host)
    offsets = sandbox.probe("timens_offsets")
    verdict.note(offsets_inside_ns=offsets)
    if not any(offsets.get(clock) for clock in CLOCKS):
        pytest.skip("the runtime set no clock offset in the sandbox's time namespace: only its identity is evidence")
    before, inside, after = bracket(sandbox, host)
    for clock in CLOCKS:
        offset = offsets.get(clock, 0)
        verdict.expect(
            before[clock] <= inside[clock] - offset <= after[clock],
            f"the sandbox's {clock} clock is not the host's plus the namespace's offset",
            **{
                f"{clock} host before": before[clock],
                f"{clock} inside": inside[clock],
                f"{clock} host after": after[clock],
            },
        )
        if offset:
            verdict.expect(
                0 <= after[clock] - before[clock] < abs(offset),
                f"the host's {clock} clock moved by the sandbox's offset",
                **{f"{clock} host elapsed ns": after[clock] - before[clock]},
            )


@guarantee("time", "shared")
def test_clocks_shared(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With time shared, the sandbox's monotonic and boot-time clocks read the host's (observed only)."""
    before, inside, after = bracket(sandbox, host)
    for clock in CLOCKS:
        verdict.expect(
            before[clock] <= inside[clock] <= after[clock],
            f"the sandbox's {clock} clock differs from the host's",
            **{
                f"{clock} host before": before[clock],
                f"{clock} inside": inside[clock],
                f"{clock} host after": after[clock],
            },
        )


@guarantee("time", "isolated", attach_unsafe=ATTACH_PREMISE, references=HANDLES)
def test_no_inherited_handle(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No fd the sandbox's first process inherited is an nsfs handle of the host's time namespace that setns
    accepts."""
    expect_no_inherited_handle("time", sandbox, host, verdict)


@guarantee("time", "isolated", needs=["mnt"], references=NAMESPACE_FILES)
def test_no_foreign_namespace_file(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No namespace file in the sandbox's mount table (a bound /proc/PID/ns/time, a volume of namespace files) opens
    another time namespace that setns accepts (under --nsc-attach: that the target itself could join)."""
    expect_no_foreign_namespace_file("time", sandbox, host, verdict)
