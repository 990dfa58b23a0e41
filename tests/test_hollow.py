"""No hollow passes: on a sandbox that offers nothing to examine, no check passes.

The barren sandbox answers through the real answer handling (nsconform.sandbox.sandbox.result_of): every
listing it is asked for is empty (no mount, no link, no cgroup, no inherited fd, no namespace file, no
filesystem instance, no SysV object), every privileged call stopped before the kernel judged it (ENOSYS),
and every other operation not implemented (ENOSYS). Its namespaces are its own exactly where the combination
says so. The host is the real one. Each check then finds nothing to examine and is skipped, saying so; the
only exceptions are checks of a shared view, where what the host shows and the sandbox does not is a real
difference (they fail), and they are named here.

The hardening areas' checks meet the barren as-shipped sandbox (BarrenShipped, in place of
nsconform.fixtures.shipped.Shipped): no fact in its status, no mount in its mount table, no path in its root,
the same barren probe, and a [hardening] promise declared in every key, so that no check is skipped only for
want of a promise.
"""

from __future__ import annotations

import errno
import importlib
import inspect
from typing import Any

import pytest

from nsconform.guarantees import NOTHING, Guarantee, Verdict, skip_nothing
from nsconform.host.mounts import MountScratch
from nsconform.host.observe import Host
from nsconform.inside.areas.seccomp import SYSCALLS
from nsconform.reach.knobs import KNOBS
from nsconform.report.baseline import Baseline, key
from nsconform.report.results import Result, summarize
from nsconform.runtimes.declared import Expect
from nsconform.runtimes.hardening import Hardening
from nsconform.sandbox.sandbox import result_of
from tests.test_negative_controls import catalogue

EMPTY: dict[str, Any] = {
    "mountinfo": [],
    "links": [],
    "cgroups": [],
    "pids": [],
    "dev_shm": [],
    "sysvipc": {"shm": [], "sem": [], "msg": []},
    "inherited_handles": [],
    "namespace_files": [],
    "fs_instances": [],
    "host_privileged": {"swapoff": errno.ENOSYS, "init_module": errno.ENOSYS},
    "device_nodes": {"nodes": [], "cut_short": False},
}
# shared views: the host's objects (its links, mounts, cgroups, a SysV object of its own) missing inside is a
# difference, not nothing
FAIL_ON_BARREN = {
    "net.host_links_visible",
    "cgroup.paths_shared",
    "mnt.mount_table_shared",
    "ipc.sysv_objects_shared",
}


class Barren:
    """A sandbox that offers nothing to examine (see the module's docstring)."""

    def __init__(self, combination: frozenset[str]) -> None:
        self.combination = combination
        self.pid = 1  # the host's init: only ever read, never signalled
        self.own_kernel = None
        self.joined = False
        self.timeout = 1.0

    def probe(self, op: str, **args: Any) -> Any:
        if op in EMPTY:
            return result_of(op, {"ok": True, "result": EMPTY[op]})
        return result_of(op, {"ok": False, "errno": errno.ENOSYS, "error": f"{op}: not implemented"})

    def ns_inode(self, ns: str) -> tuple[int, int] | None:
        host = Host().ns_inode(ns)
        return (host[0], host[1] + 1) if host and ns in self.combination else host

    def __getattr__(self, name: str) -> Any:  # hello, channel, ns_members, end ...: nothing either
        skip_nothing(f"the barren sandbox has no {name}")


# a promise in every [hardening] key (nsconform.runtimes.hardening.AREA_KEYS)
PROMISE = Hardening(
    source="the barren sandbox's own",
    command=("true",),
    capabilities=("CAP_CHOWN",),
    no_new_privs=True,
    seccomp="filter",
    must_refuse=tuple(SYSCALLS)[:3],
    masked_paths=("/proc/kcore", "/sys/firmware"),
    readonly_paths=("/proc/sys", "/proc/sysrq-trigger"),
    devices=("null", "zero", "pts/*"),
    knobs=tuple(KNOBS),
    sockets=(),
)


class BarrenShipped:
    """An as-shipped sandbox that offers nothing to examine (see the module's docstring); its facts-reading
    interface is nsconform.fixtures.shipped.Shipped's. Its pid is the host's init, only ever read: each check
    must find the empty mount table before it looks at anything through /proc/PID."""

    def __init__(self) -> None:
        self.name = "barren"
        self.runtime = object()  # no runtime, and attached to none
        self.declared = PROMISE
        self.pid = 1
        self.sandbox = Barren(frozenset())

    def probe(self, op: str, **args: Any) -> Any:
        return self.sandbox.probe(op, **args)

    def twin(self) -> Barren:
        return self.sandbox

    def facts(self) -> dict[str, str]:
        return {}

    def mountinfo(self) -> list[dict[str, Any]]:
        return []

    def own_namespace(self, ns: str) -> bool:
        return False

    def exists(self, path: str) -> bool:
        return False


def combination_for(spec: Guarantee) -> frozenset[str]:
    if spec.area:
        return frozenset()
    isolated = {spec.namespace} if spec.when != "shared" else set()
    return frozenset(isolated | spec.needs)


def run_barren(name: str, spec: Guarantee) -> tuple[str, str]:
    """The check's outcome on the barren sandbox, and its reason."""
    module = importlib.import_module(f"nsconform.isolation_checks.{name.split('.')[0]}")
    check = getattr(module, "test_" + name.split(".", 1)[1])
    combination = combination_for(spec)
    verdict = Verdict(combination, spec.expected(combination))
    barren = Barren(combination)
    given = {
        "sandbox": barren,
        "shipped": BarrenShipped(),
        "host": Host(),
        "verdict": verdict,
        "declared": Expect(),
        "veth": lambda _: skip_nothing("no veth can be moved into the barren sandbox"),
        "scratch": MountScratch(shared="/nonexistent-nsconform", held="/nonexistent-nsconform", held_source="x"),
    }
    try:
        check(**{parameter: given[parameter] for parameter in inspect.signature(check).parameters})
        verdict.raise_failures()
    except pytest.skip.Exception as e:
        return "skipped", str(e.msg)
    except AssertionError as e:
        return "failed", str(e)
    return "passed", ""


CHECKS = sorted(n for n in catalogue() if not n.endswith(".namespace_identity"))
AREA_CHECKS = sorted(n for n, spec in catalogue().items() if spec.area)


@pytest.mark.parametrize("name", CHECKS)
def test_no_check_passes_on_a_sandbox_offering_nothing(name: str) -> None:
    """Every check, of a namespace or of a hardening area, is skipped on the barren sandbox, saying it found
    nothing to examine (the shared views that compare with what the host shows fail instead: the host's objects
    are missing inside). The namespace identity checks are not among them: the host reads the identity of the
    sandbox's namespaces itself, and the verdict's basis counts their passes apart (`identity only` is no
    behaviour)."""
    outcome, reason = run_barren(name, catalogue()[name])
    if name in FAIL_ON_BARREN:
        assert outcome == "failed", reason
    else:
        assert (outcome, reason.split(":")[0]) == ("skipped", NOTHING), reason


def test_an_area_that_examined_nothing_rests_on_nothing() -> None:
    """Every area's checks, on the barren as-shipped sandbox, as the report summarizes them: no area is
    conformant, and no verdict's basis counts a check that did not exercise its area."""
    specs = {name: catalogue()[name] for name in AREA_CHECKS}
    results = [
        Result(
            name,
            name,
            None,
            None,
            spec.expected(frozenset()),
            *run_barren(name, spec),
            area=spec.area,
            rests_on=spec.rests_on,
        )
        for name, spec in specs.items()
    ]
    areas = sorted({spec.area for spec in specs.values()})
    summary = summarize(results, (), areas)
    assert {area: (summary[area]["verdict"], summary[area]["basis"]["rests_on"]) for area in areas} == dict.fromkeys(
        areas, ("untested", "nothing")
    ), summary


def test_a_pass_that_becomes_a_skip_is_no_regression_but_counted(tmp_path) -> None:
    """Against a baseline, a result that passed there and is skipped now is no regression; the comparison counts it."""
    was = {"check": "ipc.fs_instances_own", "combination": ["ipc", "mnt"], "outcome": "passed"}
    baseline = Baseline(tmp_path / "baseline.json", {("ipc.fs_instances_own", "ipc+mnt"): was})
    now = Result("x", "ipc.fs_instances_own", "ipc", ["ipc", "mnt"], "isolated", "skipped", f"{NOTHING}: none")
    comparison = baseline.compare([now])
    assert not comparison.regressions
    assert comparison.now_skipped == 1
    assert comparison.to_json()["now_skipped"] == 1


def test_a_renamed_check_is_compared_under_its_new_name(tmp_path) -> None:
    """A baseline's result of a check since renamed (baseline.RENAMED) is the new check's: no missing regression."""
    was = {"check": "ipc.mqueue_mounts_own", "combination": ["ipc", "mnt"], "outcome": "passed"}
    baseline = Baseline(tmp_path / "baseline.json", {key(was): was})
    now = Result("x", "ipc.fs_instances_own", "ipc", ["ipc", "mnt"], "isolated", "failed", "shows another")
    assert [(c.check, c.now) for c in baseline.compare([now]).regressions] == [("ipc.fs_instances_own", "failed")]
