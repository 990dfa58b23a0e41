"""caps: root inside the as-shipped sandbox holds the capabilities its runtime declares, and no other.

The declared set (a profile's [hardening] capabilities) is the runtime's documented default: runc's and
crun's `spec`, docker's and podman's default capability list. A capability is over the user namespace the
sandbox's first process is in: the host's where the sandbox has none of its own (then an extra capability
is power over the host's kernel objects), the sandbox's own where it has one. The shocker exploit (2014)
broke out of docker through CAP_DAC_READ_SEARCH and open_by_handle_at.
"""

from __future__ import annotations

import pytest

from nsconform.guarantees import guarantee, skip_nothing
from nsconform.inside.areas.caps import CAP_ACTIONS
from nsconform.runtimes.bundles import CAPABILITIES

SETS = ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh")
REFUSED = ("EPERM", "EACCES")
SHOCKER = "shocker (2014; open_by_handle_at with CAP_DAC_READ_SEARCH)"
OCI_CAPS = "OCI runtime spec: config.md, process.capabilities"
DEFAULTS = "the runtime's documented defaults (its profile's [hardening] source)"


def names(mask: str) -> set[str]:
    """The capability names of a /proc/PID/status set (hex), CAP_<bit> for a bit this table has no name for."""
    value = int(mask, 16)
    return {
        f"CAP_{CAPABILITIES[bit]}" if bit < len(CAPABILITIES) else f"CAP_{bit}"
        for bit in range(value.bit_length())
        if value >> bit & 1
    }


def whose(shipped) -> str:
    return "the sandbox's own user namespace" if shipped.own_namespace("user") else "the host's user namespace"


@guarantee(area="caps", declares=("capabilities",), rests_on="facts", references=(OCI_CAPS, SHOCKER, DEFAULTS))
def test_sets_as_declared(shipped, verdict):
    """Root inside the as-shipped sandbox holds no capability beyond the runtime's declared set: its effective,
    permitted, bounding, ambient and inheritable sets (/proc/PID/status) are each within it."""
    # 1. The sets, as the kernel reports them for the sandbox's first process (the target's with --nsc-attach)
    facts = shipped.facts()
    declared = set(shipped.declared.capabilities or ())
    verdict.note(over=whose(shipped), declared=sorted(declared))
    present = [key for key in SETS if key in facts]
    if not present:
        skip_nothing("the sandbox's kernel reports no capability sets in /proc/PID/status")
    # 2. EXPECT each set within the declared one
    for key in present:
        held = names(facts[key])
        verdict.expect(
            held <= declared,
            f"{key} holds capabilities the runtime does not declare: {', '.join(sorted(held - declared))}",
            **{key: sorted(held)},
        )
    missing = declared - names(facts.get("CapEff", "0"))
    if missing:
        verdict.note(declared_not_effective=sorted(missing))


@guarantee(
    area="caps",
    declares=("capabilities",),
    rests_on="behaviour",
    rootful=True,
    references=(SHOCKER, "capabilities(7)", "open_by_handle_at(2)"),
)
def test_undeclared_unusable(shipped, verdict):
    """A capability the runtime does not declare cannot be used inside: where one has a harmless action, that
    action is refused (a raw socket for CAP_NET_RAW, open_by_handle_at on the harness's root directory for
    CAP_DAC_READ_SEARCH, a tmpfs on a directory of the sandbox's own root for CAP_SYS_ADMIN)."""
    # 1. The capabilities with a harmless action that the runtime does not declare
    declared = set(shipped.declared.capabilities or ())
    tried = [name for name in CAP_ACTIONS if f"CAP_{name}" not in declared]
    verdict.note(over=whose(shipped))
    if "SYS_ADMIN" in tried and not shipped.own_namespace("mnt"):
        tried.remove("SYS_ADMIN")  # a mount would land in the host's mount table
        verdict.note(sys_admin="not tried: the sandbox shares the host's mount namespace")
    if not tried:
        skip_nothing("every capability with a harmless action is declared: none undeclared to try")
    # 2. Try each inside; EXPECT a refusal (EPERM, EACCES); another error tells nothing either way
    seen = shipped.probe("cap_actions", names=tried, scratch="/tmp")
    verdict.note(tried=seen)
    told = {name: result for name, result in seen.items() if result == "ok" or result in REFUSED}
    for name, result in told.items():
        verdict.expect(result != "ok", f"CAP_{name}, not declared, is usable inside over {whose(shipped)}")
    if not told:
        skip_nothing(f"no action could tell: each failed for another reason than a refusal ({seen})")


@guarantee(area="caps", declares=("no_new_privs",), rests_on="facts", references=("prctl(2) PR_SET_NO_NEW_PRIVS",))
def test_no_new_privs_as_declared(shipped, verdict):
    """Where the runtime declares no_new_privs, the sandbox's first process has it set (NoNewPrivs: 1): no
    setuid binary or file capability inside can raise its privileges."""
    # 1. What the profile promises; `false` promises nothing a check could fail on
    if shipped.declared.no_new_privs is False:
        pytest.skip("the runtime declares no_new_privs = false: it promises nothing here")
    # 2. EXPECT NoNewPrivs: 1
    facts = shipped.facts()
    if "NoNewPrivs" not in facts:
        skip_nothing("the sandbox's kernel reports no NoNewPrivs in /proc/PID/status")
    verdict.expect(facts["NoNewPrivs"] == "1", "no_new_privs is not set inside", NoNewPrivs=facts["NoNewPrivs"])
