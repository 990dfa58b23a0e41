"""A runtime that declares slave propagation is held to it: host mounts must reach its sandboxes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from nsconform.runtimes.declared import Expect
from nsconform.sandbox.native import NativeRuntime
from tests.conftest import check_node

CHECK = "mnt.host_mount_does_not_propagate"


@dataclass(frozen=True)
class SlaveNative(NativeRuntime):
    """The native runtime, declaring (as a profile's `[expect] propagation = "slave"` would) slave propagation."""

    @property
    def expect(self) -> Expect:
        return replace(super().expect, propagation="slave")


def test_declared_slave_propagation_holds(run_suite) -> None:
    """Mount and user isolated, a kept shared mount turns slave: a host mount reaches the sandbox, as declared."""
    runtime = SlaveNative(leaks=frozenset({"keep_propagation"}))
    run = run_suite("--nsc-namespaces", "mnt,user", check_node(CHECK, "mnt+user"), runtime=runtime)
    assert run.outcomes(CHECK) == {"mnt+user": "passed"}, run.output
    (result,) = run.report["results"]
    assert result["evidence"]["declared_propagation"] == "slave"


def test_declared_slave_propagation_missing(run_suite) -> None:
    """A sandbox whose mounts are all private fails a declaration of slave propagation."""
    run = run_suite("--nsc-namespaces", "mnt", check_node(CHECK, "mnt"), runtime=SlaveNative())
    assert run.outcomes(CHECK) == {"mnt": "failed"}, run.output
    assert "declares slave propagation" in run.report["results"][0]["reason"]
