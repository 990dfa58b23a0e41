"""Connectivity on demand: a veth pair from the host into a sandbox's network namespace (pyroute2).

Names: both ends get a name of nsconform.hygiene.naming.link_name() (15 bytes at most, IFNAMSIZ), and the
pair is journaled (nsconform.hygiene.journal) before it is made, so that the reaper deletes the host end a
killed run left, by its name and ifindex.

Addresses: each pair gets its own /30 of 198.18.0.0/15 (RFC 2544's benchmarking range, used for
nothing else on the machine), the host's end .1, the sandbox's .2. The /30 follows from the host
end's ifindex, which the kernel gives to no two links of the host at once: parallel workers (and
runs) never share a /30 while their links live.

Moving a link into a network namespace takes the machine-wide RTNL lock (tens of ms), and so does
deleting one: a sandbox gets one pair at most, made when a check first asks for it (`veth_of`),
kept for the sandbox's other checks, and gone with the sandbox. The kernel deletes both ends when
the sandbox's network namespace ends; closing the sandbox deletes the host's end itself if the
kernel has not yet done so, so no pair outlives its sandbox's close.

Imported only by what uses it: pyroute2 takes ~0.1 s to import.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute, NetlinkError
from pyroute2.netlink import NETLINK_ROUTE
from pyroute2.netlink.rtnl import RTMGRP_LINK
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from nsconform.hygiene import journal, naming
from nsconform.inside import probe
from nsconform.sandbox.sandbox import Sandbox, SandboxError

NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
PREFIXLEN = 30
ENODEV = 19
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Veth:
    """One pair: the host's end (name, ifindex, address) and the sandbox's end (name, address)."""

    host_name: str
    host_index: int
    host_address: str
    peer_name: str
    peer_address: str
    prefixlen: int = PREFIXLEN


def subnet(host_index: int) -> ipaddress.IPv4Network:
    """The /30 of the pair whose host end has ifindex `host_index`."""
    blocks = NETWORK.num_addresses >> (32 - PREFIXLEN)
    first = int(NETWORK.network_address) + (host_index % blocks << (32 - PREFIXLEN))
    return ipaddress.IPv4Network((first, PREFIXLEN))


class LinkEvents:
    """The host's link notifications from the moment this is made: wait for a change, no polling.

    Read from a plain netlink socket (decoded by pyroute2), so that select() sees every message:
    pyroute2's own sockets read ahead into a queue that select() cannot see.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, RTMGRP_LINK))
        self.marshal = MarshalRtnl()

    def wait(self, index: int, done: Callable[[Any], bool], timeout: float) -> bool:
        """Whether a notification about link `index` satisfying `done` arrives within `timeout` s."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], remaining)[0]:
                return False
            messages = self.marshal.parse(self.sock.recv(1 << 16))
            if any(msg.get("index") == index and done(msg) for msg in messages):
                return True
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LinkEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def operstate_up(msg: Any) -> bool:
    """Sent once the kernel has activated the link (its queueing discipline attached): traffic flows."""
    return msg["event"] == "RTM_NEWLINK" and msg.get_attr("IFLA_OPERSTATE") == "UP"


def deleted(msg: Any) -> bool:
    return msg["event"] == "RTM_DELLINK"


def netns_fd(sandbox: Sandbox) -> int:
    """An open handle on the sandbox's network namespace, checked to be the one its probe reported."""
    try:
        fd = os.open(f"/proc/{sandbox.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SandboxError(f"cannot open the network namespace of the sandbox's process {sandbox.pid}: {e}") from e
    st = os.fstat(fd)
    found = (st.st_dev, st.st_ino)
    if found != sandbox.ns_inode("net") or found == tuple(probe.ns_inodes()["net"]):
        os.close(fd)
        raise SandboxError(
            f"process {sandbox.pid}'s network namespace {found} is not the sandbox's own "
            f"({sandbox.ns_inode('net')}, the host's being {probe.ns_inodes()['net']}): no veth moves there"
        )
    return fd


def rtnl_inside(fd: int) -> IPRoute:
    """An IPRoute in the network namespace `fd`. Its socket is made by a thread that enters the namespace
    (setns moves the calling thread alone, and the thread ends there): no helper process is forked, as
    IPRoute(netns=...) does (~7 ms a pair)."""
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def enter() -> None:
        try:
            probe.checked(probe.libc().setns(fd, CLONE_NEWNET), "setns into the sandbox's network namespace")
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE))
        except OSError as e:
            failed.append(e)

    thread = threading.Thread(target=enter, name="nsconform-enter-netns")
    thread.start()
    thread.join()
    if failed:
        raise SandboxError(f"no netlink socket in the sandbox's network namespace: {failed[0]}")
    return IPRoute(fileno=made[0].detach())  # pyroute2 takes the socket over (a datagram one, as it wants)


def create(sandbox: Sandbox, host_name: str, peer_name: str, alias: str) -> Veth:
    """Make the pair with its sandbox end in the sandbox, give the host's end its ifalias (the kernel takes none
    with the link's creation: at once after, so that the reaper can tell it for the harness's), address
    both ends, bring them up."""
    fd = netns_fd(sandbox)
    try:
        with IPRoute() as ipr, LinkEvents() as events:
            ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_name, "net_ns_fd": fd})
            (index,) = ipr.link_lookup(ifname=host_name)
            ipr.link("set", index=index, ifalias=alias)
            net = subnet(index)
            ipr.addr("add", index=index, address=str(net[1]), prefixlen=PREFIXLEN)
            ipr.link("set", index=index, state="up")
            with rtnl_inside(fd) as inside:
                (peer_index,) = inside.link_lookup(ifname=peer_name)
                inside.addr("add", index=peer_index, address=str(net[2]), prefixlen=PREFIXLEN)
                inside.link("set", index=peer_index, state="up")
            if not events.wait(index, operstate_up, sandbox.timeout):
                raise SandboxError(f"veth {host_name} did not come up within {sandbox.timeout:g} s")
    finally:
        os.close(fd)
    return Veth(host_name, index, str(net[1]), peer_name, str(net[2]))


PAIRS: weakref.WeakKeyDictionary[Sandbox, Veth] = weakref.WeakKeyDictionary()


def veth_of(sandbox: Sandbox) -> Veth:
    """The veth pair between the host and `sandbox`: made on the first request, removed when the sandbox closes."""
    pair = PAIRS.get(sandbox)
    if pair is None:
        record = journal.current()
        host_name, peer_name, alias = naming.link_name(), naming.link_name(), naming.link_alias()
        entry = record.record("link", host_name, peer=peer_name, alias=alias)
        sandbox.at_close(lambda: remove_if_present(entry, record))
        pair = PAIRS[sandbox] = create(sandbox, host_name, peer_name, alias)
        record.made(entry, ifindex=pair.host_index)
    return pair


def remove_if_present(entry: journal.Entry, record: journal.Journal) -> None:
    """Delete the host's link of `entry` unless the kernel did already (with the namespace of the pair's other
    end); by name and ifindex, when both are still the pair's."""
    try:
        index = socket.if_nametoindex(entry.name)
    except OSError:
        index = None
    if index is not None and (entry.identity is None or entry.identity["ifindex"] == index):
        with IPRoute() as ipr:
            try:
                ipr.link("del", index=index)
            except NetlinkError as e:
                if e.code != ENODEV:  # gone meanwhile, with its namespace: what we wanted
                    raise
    record.removed(entry)
