"""Knobs: root inside cannot set the host's global knobs that run a program as root on the host."""

from __future__ import annotations

import pytest

from nsconform.fixtures.shipped import Shipped, mount_table
from nsconform.guarantees import Verdict, guarantee, skip_nothing
from nsconform.inside.areas import knobs as knob_probe
from nsconform.reach import knobs
from nsconform.runtimes.runtime import attached


def expect_out_of_reach(name: str, shipped: Shipped, verdict: Verdict) -> None:
    """The shared flow of the knob checks."""
    # 1. where the sandbox's mounts show the knob: every mount of its filesystem that reaches it (a proc bound
    #    elsewhere too; release_agent: each cgroup v1 hierarchy mounted at its root)
    # 2. their facts from the host, through /proc/PID/root (filesystem, mode, owner, read-only mount), and the
    #    credentials of the sandbox's first process (effective ids on the host, capabilities, user namespace)
    # 3. EXPECT none writable by the kernel's rule; unless attached, nor by faccessat(W_OK) inside
    if shipped.declared.knobs is not None and name not in shipped.declared.knobs:
        verdict.information = f"runtime {shipped.name} promises nothing of {name} ([hardening] knobs)"
    pid = shipped.pid
    if pid is None:
        pytest.skip("the sandbox runs a kernel of its own: its knobs are that kernel's, not the host's")
    mounts = mount_table(shipped)
    on_host = knobs.host_paths(name)
    if not on_host:
        fstype, inner = knobs.KNOBS[name]
        skip_nothing(f"the host shows no {name} ({fstype} {inner}): this kernel has none to keep out of reach")
    paths = knobs.knob_paths(name, mounts)
    facts = knob_probe.knob_facts(paths, root=f"/proc/{pid}/root")
    present = [path for path in paths if facts[path]["exists"]]
    creds = knobs.credentials(pid)
    verdict.note(credentials=creds.to_json(), reachable=present, on_host=len(on_host))
    if not present:  # the mount table (or the tree) inside could have shown it: not reachable is the observation
        verdict.note(why=f"no {name} is reachable inside")
        return
    behaviour = attached(shipped.runtime) is None
    inside = shipped.probe("knob_facts", paths=present) if behaviour else {}
    reached = []
    for path in present:
        judged = [knobs.judge(name, path, facts[path], creds, behaviour=False)]
        if path in inside and inside[path]["exists"]:
            judged.append(knobs.judge(name, path, inside[path], creds, behaviour=True))
        verdict.note(**{path: [j.why for j in judged]})
        reached += [j for j in judged if j.writable]
    verdict.expect(
        not reached,
        f"{name} is writable inside: " + "; ".join(f"{r.path}: {r.why}" for r in reached),
        writable=[r.to_json() for r in reached],
    )


@guarantee(area="knobs", declares=("knobs",), rests_on="facts", references=knobs.REFERENCES["core_pattern"])
def test_core_pattern_out_of_reach(shipped: Shipped, verdict: Verdict) -> None:
    """Root inside cannot write kernel.core_pattern, whose `|program` the host's kernel runs as root at a crash."""
    expect_out_of_reach("core_pattern", shipped, verdict)


@guarantee(area="knobs", declares=("knobs",), rests_on="facts", references=knobs.REFERENCES["release_agent"])
def test_release_agent_out_of_reach(shipped: Shipped, verdict: Verdict) -> None:
    """Root inside cannot write the release_agent of a cgroup v1 hierarchy, which the host's kernel runs as root
    when a cgroup empties: no hierarchy's root mounted inside, a read-only mount, or no CAP_SYS_ADMIN over the
    initial user namespace (the rule of the CVE-2022-0492 fix)."""
    expect_out_of_reach(knobs.RELEASE_AGENT, shipped, verdict)


@guarantee(area="knobs", declares=("knobs",), rests_on="facts", references=knobs.REFERENCES["modprobe"])
def test_modprobe_out_of_reach(shipped: Shipped, verdict: Verdict) -> None:
    """Root inside cannot write kernel.modprobe, the program the host's kernel runs as root to load a module."""
    expect_out_of_reach("modprobe", shipped, verdict)


@guarantee(area="knobs", declares=("knobs",), rests_on="facts", references=knobs.REFERENCES["uevent_helper"])
def test_uevent_helper_out_of_reach(shipped: Shipped, verdict: Verdict) -> None:
    """Root inside cannot write /sys/kernel/uevent_helper, which the host's kernel runs as root at every uevent."""
    expect_out_of_reach("uevent_helper", shipped, verdict)


@guarantee(area="knobs", declares=("knobs",), rests_on="facts", references=knobs.REFERENCES["sysrq-trigger"])
def test_sysrq_trigger_out_of_reach(shipped: Shipped, verdict: Verdict) -> None:
    """Root inside cannot write /proc/sysrq-trigger, which reboots, crashes or kills the whole host."""
    expect_out_of_reach("sysrq-trigger", shipped, verdict)
