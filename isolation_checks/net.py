"""Network namespace: links, the loopback's port space, abstract unix sockets, net sysctls, and a veth on demand."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from nsconform.escapes import (
    ATTACH_PREMISE,
    HANDLES,
    NAMESPACE_FILES,
    expect_fs_instances_own,
    expect_no_foreign_namespace_file,
    expect_no_inherited_handle,
)
from nsconform.guarantees import Verdict, guarantee, skip_nothing
from nsconform.host.observe import Host
from nsconform.hygiene import journal, naming
from nsconform.sandbox.sandbox import Sandbox

if TYPE_CHECKING:  # nsconform.host.veth imports pyroute2 (~0.1 s): only the checks that make a veth load it
    from nsconform.host.veth import Veth

LOOPBACK = "127.0.0.1"
SYSCTL = "net.ipv4.ip_forward"


def own_link(name: str) -> bool:
    """A link the harness itself made (the sandbox end of a veth its journal lists), not one of the sandbox's own."""
    return any(name == entry.details.get("peer") for entry in journal.current().live("link"))


def errno_name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


@guarantee("net", "any", references=["network_namespaces(7)"])
def test_namespace_identity(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox has a network namespace of its own exactly when network is isolated."""
    verdict.identity("net", sandbox, host)


@guarantee("net", "isolated")
def test_only_loopback(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox's new network namespace holds only the loopback link (besides veths the harness adds)."""
    inside = sandbox.probe("links")
    if not inside:
        skip_nothing("the sandbox's network namespace lists no link at all (not even lo)")
    names = sorted(name for _, name, _ in inside if not own_link(name))
    verdict.expect(names == ["lo"], "the sandbox's network namespace holds links besides lo", links_inside=inside)


@guarantee("net", "isolated")
def test_host_links_invisible(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """None of the host's links (same name, ifindex and hardware address; lo aside) is visible inside."""
    outside = [link for link in host.probe("links") if link[1] != "lo"]
    if not outside:
        skip_nothing("the host has no link but lo to look for inside")
    inside = sandbox.probe("links")
    if not inside:
        skip_nothing("the sandbox's network namespace lists no link at all (not even lo)")
    seen = [link for link in outside if link in inside]
    verdict.expect(not seen, "host links are visible inside", host_links_seen_inside=seen, links_inside=inside)


@guarantee("net", "shared")
def test_host_links_visible(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With network shared, the sandbox sees the host's links under the same names and ifindexes (observed only)."""
    # links that exist on the host both before and after the look inside must be seen inside
    # (others may be the short-lived veths of parallel workers)
    before = host.probe("links")
    inside = sandbox.probe("links")
    stable = [link for link in host.probe("links") if link in before]
    if not stable:
        skip_nothing("the host held no link throughout the look inside")
    missing = [link for link in stable if link not in inside]
    verdict.expect(not missing, "host links are missing inside", host_links_missing_inside=missing, links_inside=inside)


@guarantee("net", "isolated")
def test_loopback_port_private(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """A TCP port the host holds on 127.0.0.1 is free inside: binding it there succeeds too."""
    # 1. the host listens on a free port of its loopback (closed after); 2. the probe binds the same port
    with host.listener(LOOPBACK) as held:
        try:
            bound = sandbox.probe("tcp_bind", address=LOOPBACK, port=held.port)
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                pytest.skip(f"{LOOPBACK} is no address inside (EADDRNOTAVAIL): the sandbox's lo is down")
            verdict.expect(
                False,
                "a TCP port the host holds on 127.0.0.1 cannot be bound inside",
                port=held.port,
                bind=errno_name(e),
            )
        else:
            verdict.note(port=held.port, bound_inside=bound)


def expect_unreachable(
    what: str, address: str, port: int | None, sandbox: Sandbox, host: Host, verdict: Verdict
) -> None:
    """EXPECT a host listener at `address`:`port` (port None: a unix socket) not to answer the probe."""
    # 1. the host listens (closed after) and answers every connection with a token
    # 2. the probe connects from inside; EXPECT it fails, and in any case not with the host's token back
    token = naming.unique("reply")
    with host.listener(address, port, reply=token) as listening:
        try:
            reply = sandbox.probe("connect", address=address, port=listening.port, send="hello", timeout=2.0)
        except OSError as e:
            verdict.note(connect=errno_name(e))
        else:
            verdict.expect(
                reply != token,
                f"{what} is reachable from inside: it answered the probe",
                address=address,
                port=listening.port,
                reply=reply,
            )


@guarantee("net", "isolated")
def test_host_loopback_unreachable(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """A TCP listener on the host's 127.0.0.1 cannot be reached from inside."""
    expect_unreachable("a listener on the host's loopback", LOOPBACK, 0, sandbox, host, verdict)


@guarantee("net", "isolated", references=["CVE-2020-15257", "unix(7): abstract sockets"])
def test_host_abstract_socket_unreachable(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """An abstract unix socket bound on the host cannot be reached from inside (the class of CVE-2020-15257)."""
    expect_unreachable(
        "an abstract unix socket of the host", "@" + naming.unique("abstract"), None, sandbox, host, verdict
    )


@guarantee(
    "net",
    "isolated",
    attach_unsafe=f"writing {SYSCTL} also rewrites the forwarding setting of every link of the namespace, which "
    "no restore puts back exactly",
)
def test_sysctl_private(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """A net sysctl (net.ipv4.ip_forward) changed inside leaves the host's value unchanged."""
    # 1. ASSERT an own network namespace, so that the write stays inside it
    # 2. flip the sysctl inside and read it back inside; 3. EXPECT the host's value unchanged; 4. restore inside
    verdict.require_own_namespace("net", sandbox, host)
    before = host.probe("sysctl", name=SYSCTL)
    value = "0" if sandbox.probe("sysctl", name=SYSCTL) == "1" else "1"
    try:
        previous = sandbox.probe("set_sysctl", name=SYSCTL, value=value)
    except OSError as e:
        pytest.skip(f"the sandbox may not write {SYSCTL} ({errno_name(e)}): only the namespace identity is evidence")
    try:
        verdict.require(sandbox.probe("sysctl", name=SYSCTL) == value, f"{SYSCTL} set inside did not take inside")
        after = host.probe("sysctl", name=SYSCTL)
        verdict.expect(
            after == before,
            f"{SYSCTL} set inside the sandbox changed the host's",
            set_inside=value,
            host_before=before,
            host_after=after,
        )
    finally:
        sandbox.probe("set_sysctl", name=SYSCTL, value=previous)


@guarantee(
    "net", "isolated", rootful=True, host_view="it moves a veth into the network namespace of the sandbox's process"
)
def test_veth_carries_tcp(sandbox: Sandbox, host: Host, verdict: Verdict, veth: Callable[[Sandbox], Veth]) -> None:
    """A veth pair moved into the sandbox carries TCP between the host and the sandbox, both ways."""
    # 1. ASSERT an own network namespace (the fixture refuses the host's); 2. a veth pair, its peer inside
    # 3. the host listens on its end's address; the probe connects from inside and sends a token
    # 4. EXPECT the host got the probe's token and the probe the host's
    verdict.require_own_namespace("net", sandbox, host)
    pair = veth(sandbox)
    sent, answer = naming.unique("to-host"), naming.unique("to-sandbox")
    with host.listener(pair.host_address, reply=answer) as listening:
        try:
            reply = sandbox.probe(
                "connect", address=pair.host_address, port=listening.port, send=sent, timeout=sandbox.timeout / 2
            )
        except OSError as e:
            reply = f"connect failed: {errno_name(e)}"
    verdict.note(veth=pair.host_name, host_address=pair.host_address, sandbox_address=pair.peer_address)
    verdict.expect(
        listening.received == [sent], "the host did not get the sandbox's data", host_received=listening.received
    )
    verdict.expect(reply == answer, "the sandbox did not get the host's data", sandbox_received=reply)


@guarantee(
    "net",
    "isolated",
    rootful=True,
    attach_unsafe="it ends the sandbox and expects its network namespace gone; the target's outlives the probe",
    ends_sandbox=True,
    host_view="it moves a veth into the network namespace of the sandbox's process",
)
def test_veth_vanishes_with_sandbox(
    sandbox: Sandbox, host: Host, verdict: Verdict, veth: Callable[[Sandbox], Veth]
) -> None:
    """When the sandbox ends, its network namespace ends with it: a veth moved inside vanishes from the host."""
    # 1. the combination's sandbox (this check ends it) with its veth pair; 2. watch the host's links, end it
    # 3. EXPECT no process left in its network namespace, and the host's end of the pair deleted by the kernel
    from nsconform.host.veth import LinkEvents, deleted

    verdict.require_own_namespace("net", sandbox, host)
    pair = veth(sandbox)
    with LinkEvents() as events:
        sandbox.end()
        holders = sandbox.ns_members("net")
        verdict.require(
            not holders,
            "processes of the sandbox outlived it in its network namespace",
            holders=[p.pid for p in holders],
        )
        gone = events.wait(pair.host_index, deleted, sandbox.timeout)
    verdict.expect(
        gone,
        f"the sandbox's veth is still on the host {sandbox.timeout:g} s after the sandbox ended",
        veth=pair.host_name,
    )


@guarantee("net", "isolated", attach_unsafe=ATTACH_PREMISE, references=(*HANDLES, "CVE-2020-15257"))
def test_no_inherited_handle(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No fd the sandbox's first process inherited opens the host's network namespace: no nsfs handle of it
    that setns accepts, no socket made in it."""
    expect_no_inherited_handle("net", sandbox, host, verdict)


@guarantee("net", "isolated", needs=["mnt"], references=("network_namespaces(7)", "sysfs(5)"))
def test_fs_instances_own(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """Where network and mount are isolated, every sysfs mounted inside, wherever it is mounted, lists in class/net
    the sandbox's own links, not another namespace's (a sysfs shows the network namespace it was mounted from)."""
    expect_fs_instances_own("net", sandbox, host, verdict)


@guarantee("net", "isolated", needs=["mnt"], references=NAMESPACE_FILES)
def test_no_foreign_namespace_file(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No namespace file in the sandbox's mount table (a bound /proc/PID/ns/net, a volume of /run/netns) opens
    another network namespace that setns accepts (under --nsc-attach: that the target itself could join)."""
    expect_no_foreign_namespace_file("net", sandbox, host, verdict)
