"""The checks' short names for nsconform's fixtures, in this directory only.

The plugin's fixtures all carry the `nsconform_` prefix so that they never meet a project's own (or
pytest-testinfra's `host`); here, where only checks live, they read as the specification they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nsconform.fixtures.shipped import Shipped
from nsconform.guarantees import Verdict
from nsconform.host.mounts import MountScratch
from nsconform.host.observe import Host
from nsconform.runtimes.declared import Expect
from nsconform.sandbox.sandbox import Sandbox


@pytest.fixture
def sandbox(nsconform_sandbox: Sandbox) -> Sandbox:
    return nsconform_sandbox


@pytest.fixture
def host(nsconform_host: Host) -> Host:
    return nsconform_host


@pytest.fixture
def verdict(nsconform_verdict: Verdict) -> Verdict:
    return nsconform_verdict


@pytest.fixture
def veth(nsconform_veth: Callable[[Sandbox], Any]) -> Callable[[Sandbox], Any]:
    return nsconform_veth


@pytest.fixture
def declared(nsconform_declared: Expect) -> Expect:
    return nsconform_declared


@pytest.fixture
def mount_scratch(nsconform_mount_scratch: MountScratch) -> MountScratch:
    return nsconform_mount_scratch


@pytest.fixture
def shipped(nsconform_shipped: Shipped) -> Shipped:
    return nsconform_shipped
