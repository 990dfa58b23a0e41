"""seccomp: the sandbox runs under the seccomp filter its runtime declares, and the filter refuses what it must.

A refusal counts only where it can be told from the kernel's own answer: each syscall is tried with
arguments that do nothing if it is allowed, in the as-shipped sandbox and in its twin without the filter
(the same runtime, configuration and capabilities). A syscall that gives the same answer in both (one this
kernel lacks: ENOSYS; one a missing capability refuses first: EPERM) is information, not a pass.
"""

from __future__ import annotations

import pytest

from nsconform.guarantees import guarantee, skip_nothing
from nsconform.runtimes.hardening import SECCOMP_STATUS

OCI_SECCOMP = "OCI runtime spec: config-linux.md, Seccomp"
DOCKER_SECCOMP = "docker: Seccomp security profiles (docs.docker.com/engine/security/seccomp)"
DEFAULTS = "the runtime's documented defaults (its profile's [hardening] source)"


@guarantee(area="seccomp", declares=("seccomp",), rests_on="facts", references=(OCI_SECCOMP, "seccomp(2)", DEFAULTS))
def test_mode_as_declared(shipped, verdict):
    """The sandbox's first process runs in the declared seccomp mode (/proc/PID/status Seccomp: 2 with at least
    one filter where a filter is declared, 0 where none is)."""
    # 1. The mode as the kernel reports it
    facts = shipped.facts()
    if "Seccomp" not in facts:
        skip_nothing("the sandbox's kernel reports no Seccomp line in /proc/PID/status")
    declared = shipped.declared.seccomp
    verdict.note(declared=declared, Seccomp=facts["Seccomp"], Seccomp_filters=facts.get("Seccomp_filters"))
    # 2. EXPECT the declared mode, and with a filter at least one filter installed (Linux 5.9 reports the count)
    verdict.expect(
        facts["Seccomp"] == SECCOMP_STATUS.get(declared or "", facts["Seccomp"]),
        f"seccomp mode {facts['Seccomp']} inside, the runtime declares {declared}",
    )
    if declared == "filter" and "Seccomp_filters" in facts:
        verdict.expect(int(facts["Seccomp_filters"]) >= 1, "no seccomp filter is installed inside")


@guarantee(
    area="seccomp",
    declares=("must_refuse",),
    rests_on="behaviour",
    rootful=True,
    references=(OCI_SECCOMP, DOCKER_SECCOMP, "seccomp(2)"),
)
def test_refuses_declared(shipped, verdict):
    """Every syscall the runtime declares its filter refuses is refused inside: tried with arguments that do
    nothing if allowed, it gives another answer than in the twin sandbox without the filter, and never success.
    One that answers alike in both cannot be told from the kernel's own refusal: information, not a pass."""
    # 1. The declared syscalls, tried in the as-shipped sandbox and in its twin without the filter
    names = list(shipped.declared.must_refuse or ())
    if not names:
        pytest.skip("the runtime declares no syscall its filter must refuse ([hardening] must_refuse)")
    inside = shipped.probe("syscall_results", names=names)
    unfiltered = shipped.twin().probe("syscall_results", names=names)
    # 2. Per syscall: allowed (success), refused (another answer than unfiltered), or indistinguishable
    allowed = [n for n in names if inside[n] == "ok"]
    refused = [n for n in names if inside[n] not in ("ok", "n/a") and inside[n] != unfiltered[n]]
    alike = {n: inside[n] for n in names if n not in allowed and n not in refused}
    verdict.note(
        refused={n: f"{inside[n]} (unfiltered {unfiltered[n]})" for n in refused},
        indistinguishable=alike,
    )
    # 3. EXPECT none allowed; a pass needs at least one refusal that could be told apart
    verdict.expect(not allowed, f"the filter allows {', '.join(allowed)}", allowed=allowed)
    if not allowed and not refused:
        skip_nothing(f"no declared syscall's refusal can be told from this kernel's own answer here: {alike}")
