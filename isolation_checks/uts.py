"""UTS namespace: hostname and NIS domain name."""

from __future__ import annotations

import errno

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
from nsconform.hygiene import naming
from nsconform.runtimes.declared import Expect
from nsconform.sandbox.sandbox import Sandbox


@guarantee("uts", "any", references=["uts_namespaces(7)"])
def test_namespace_identity(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox has a UTS namespace of its own exactly when UTS is isolated."""
    verdict.identity("uts", sandbox, host)


def expect_name_stays_inside(field: str, sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    # 1. ASSERT the sandbox has its own UTS namespace, so that the write below stays inside it
    # 2. set a fresh, recognisable value of `field` inside, and read it back inside
    # 3. EXPECT the host's value unchanged; 4. restore the sandbox's old value
    verdict.require_own_namespace("uts", sandbox, host)
    before = host.probe("uts")[field]
    name = naming.unique("uts")[:63]
    try:
        previous = sandbox.probe("set_uts", **{field: name})
    except OSError as e:  # EPERM where the runtime drops the capability; gVisor refuses a domain name (ENAMETOOLONG)
        why = errno.errorcode.get(e.errno or 0, str(e.errno))
        pytest.skip(f"the sandbox may not set its {field} ({why}): only the namespace identity is evidence")
    try:
        seen_inside = sandbox.probe("uts")[field]
        verdict.require(
            seen_inside == name, f"the {field} set inside did not take inside", **{f"{field} inside": seen_inside}
        )
        after = host.probe("uts")[field]
        verdict.expect(
            after == before,
            f"the {field} set inside the sandbox changed the host's",
            **{"set inside": name, "host before": before, "host after": after},
        )
    finally:
        sandbox.probe("set_uts", **{field: previous[field]})


@guarantee("uts", "isolated")
def test_hostname_private(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """A hostname set inside the sandbox is not seen on the host."""
    expect_name_stays_inside("hostname", sandbox, host, verdict)


@guarantee("uts", "isolated")
def test_domainname_private(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """A NIS domain name set inside the sandbox is not seen on the host."""
    expect_name_stays_inside("domainname", sandbox, host, verdict)


@guarantee("uts", "shared")
def test_names_shared(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With UTS shared, the sandbox sees the host's hostname and domain name (observed, never written)."""
    verdict.expect_equal_fields(sandbox.probe("uts"), host.probe("uts"), ("hostname", "domainname"))


@guarantee("uts", "isolated", declares=["hostname"])
def test_hostname_as_declared(sandbox: Sandbox, host: Host, verdict: Verdict, declared: Expect) -> None:
    """The sandbox starts with the hostname its runtime declares (a profile's [expect] hostname)."""
    verdict.require_own_namespace("uts", sandbox, host)
    at_start = sandbox.hello["uts"]["hostname"]  # before any check renamed it
    verdict.expect(
        at_start == declared.hostname,
        "the sandbox's hostname is not the one its runtime declares",
        hostname_at_start=at_start,
        hostname_declared=declared.hostname,
    )


@guarantee("uts", "isolated", attach_unsafe=ATTACH_PREMISE, references=HANDLES)
def test_no_inherited_handle(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No fd the sandbox's first process inherited is an nsfs handle of the host's UTS namespace that setns accepts."""
    expect_no_inherited_handle("uts", sandbox, host, verdict)


@guarantee("uts", "isolated", needs=["mnt"], references=NAMESPACE_FILES)
def test_no_foreign_namespace_file(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No namespace file in the sandbox's mount table (a bound /proc/PID/ns/uts, a volume of namespace files) opens
    another UTS namespace that setns accepts (under --nsc-attach: that the target itself could join)."""
    expect_no_foreign_namespace_file("uts", sandbox, host, verdict)
