"""IPC namespace: System V objects and POSIX message queues; POSIX shared memory with a private /dev/shm."""

from __future__ import annotations

import pytest

from nsconform.escapes import (
    ATTACH_PREMISE,
    HANDLES,
    NAMESPACE_FILES,
    expect_fs_instances_own,
    expect_no_foreign_namespace_file,
    expect_no_inherited_handle,
)
from nsconform.guarantees import Verdict, guarantee
from nsconform.host.observe import Host
from nsconform.hygiene import naming
from nsconform.sandbox.sandbox import Sandbox

KINDS = ("shm", "sem", "msg")


@guarantee("ipc", "any", references=["ipc_namespaces(7)"])
def test_namespace_identity(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """The sandbox has an IPC namespace of its own exactly when IPC is isolated."""
    verdict.identity("ipc", sandbox, host)


def keys_of(view: dict[str, list[list[int]]], kind: str) -> set[int]:
    return {key for key, _ in view[kind]}


@guarantee("ipc", "isolated")
def test_sysv_objects_hidden_from_host(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """SysV shared memory, semaphores and message queues created inside are invisible on the host."""
    # 1. ASSERT an own IPC namespace; 2. create one object of each kind inside
    # 3. EXPECT no such key in the host's /proc/sysvipc; 4. remove them inside
    verdict.require_own_namespace("ipc", sandbox, host)
    made = {kind: (naming.ipc_key(), None) for kind in KINDS}
    try:
        for kind in KINDS:
            made[kind] = (made[kind][0], sandbox.probe("ipc_create", kind=kind, key=made[kind][0]))
        seen = host.probe("sysvipc")
        for kind, (key, _) in made.items():
            verdict.expect(
                key not in keys_of(seen, kind),
                f"a SysV {kind} object created inside is visible on the host",
                **{f"{kind} key": hex(key)},
            )
    finally:
        for kind, (_, ident) in made.items():
            if ident is not None:
                sandbox.probe("ipc_remove", kind=kind, ident=ident)


@guarantee("ipc", "isolated")
def test_host_sysv_objects_hidden_inside(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """SysV objects of the host are invisible inside, and their keys are free to be created there again."""
    # 1. the host holds one object of each kind (removed after); 2. EXPECT their keys unknown inside (looked up
    #    by key, as a program inside would); 3. EXPECT creating the same key inside succeeds (no interference),
    #    then remove it inside
    verdict.require_own_namespace("ipc", sandbox, host)
    for kind in KINDS:
        key = naming.ipc_key()
        with host.ipc_object(kind, key):
            verdict.expect(
                sandbox.probe("ipc_lookup", kind=kind, key=key) is None,
                f"a host SysV {kind} object is visible inside",
                **{f"{kind} key": hex(key)},
            )
            try:
                ident = sandbox.probe("ipc_create", kind=kind, key=key)
            except FileExistsError:
                verdict.expect(
                    False, f"the key of a host SysV {kind} object is taken inside", **{f"{kind} key": hex(key)}
                )
            else:
                sandbox.probe("ipc_remove", kind=kind, ident=ident)


@guarantee("ipc", "isolated")
def test_posix_mqueue_private(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """POSIX message queues are private: one made inside is not on the host, and the host's is not inside."""
    verdict.require_own_namespace("ipc", sandbox, host)
    inner, outer = "/" + naming.unique("mq-in"), "/" + naming.unique("mq-out")
    sandbox.probe("mq_create", name=inner)
    try:
        verdict.expect(
            not host.probe("mq_exists", name=inner), "a POSIX queue made inside exists on the host", queue=inner
        )
    finally:
        sandbox.probe("mq_remove", name=inner)
    with host.message_queue(outer):
        verdict.expect(not sandbox.probe("mq_exists", name=outer), "a host POSIX queue exists inside", queue=outer)


@guarantee("ipc", "isolated", needs=["mnt"])
def test_posix_shm_private(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """POSIX shared memory (/dev/shm) is private when IPC and mount are both isolated."""
    verdict.require_own_namespace("ipc", sandbox, host)
    inner, outer = naming.unique("shm-in"), naming.unique("shm-out")
    try:
        sandbox.probe("shm_create", name=inner)
    except PermissionError:
        pytest.skip("the sandbox may not create files in its /dev/shm (EPERM)")
    except FileNotFoundError:
        pytest.skip("the sandbox has no /dev/shm: POSIX shared memory cannot be used inside, so none is shared")
    try:
        verdict.expect(
            inner not in host.probe("dev_shm"), "a POSIX shm object made inside is in the host's /dev/shm", object=inner
        )
    finally:
        sandbox.probe("shm_remove", name=inner)
    with host.shm_file(outer):
        verdict.expect(
            outer not in sandbox.probe("dev_shm"), "a host POSIX shm object is in the sandbox's /dev/shm", object=outer
        )


@guarantee("ipc", "shared")
def test_sysv_objects_shared(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """With IPC shared, the sandbox sees exactly the host's SysV objects (never created inside)."""
    # 1. the host holds a SysV object of its own throughout (removed after), so that the views never compare
    #    nothing with nothing; 2. EXPECT the sandbox's view to be the host's, bracketed by two host views

    def objects(view: dict[str, list[list[int]]]) -> set[str]:
        return {f"{kind} key={key:#x} id={ident}" for kind, rows in view.items() for key, ident in rows}

    with host.ipc_object("shm", naming.ipc_key()):
        verdict.expect_shared_view(
            "SysV objects", lambda: objects(sandbox.probe("sysvipc")), lambda: objects(host.probe("sysvipc"))
        )


@guarantee("ipc", "isolated", attach_unsafe=ATTACH_PREMISE, references=HANDLES)
def test_no_inherited_handle(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No fd the sandbox's first process inherited is an nsfs handle of the host's IPC namespace that setns accepts."""
    expect_no_inherited_handle("ipc", sandbox, host, verdict)


@guarantee("ipc", "isolated", needs=["mnt"], references=("ipc_namespaces(7)", "mq_overview(7)"))
def test_fs_instances_own(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """Where IPC and mount are isolated, every mqueue filesystem mounted inside, wherever it is mounted (as on
    /dev/mqueue), shows the sandbox's own POSIX message queues, not another IPC namespace's (an mqueue filesystem
    shows its mounter's IPC namespace)."""
    # 1. ASSERT an own IPC namespace (the queue made next stays inside); 2. make a queue inside
    # 3. EXPECT it listed in every mqueue filesystem mounted inside; 4. remove it
    verdict.require_own_namespace("ipc", sandbox, host)
    name = naming.unique("mq-view")
    sandbox.probe("mq_create", name="/" + name)
    try:
        expect_fs_instances_own("ipc", sandbox, host, verdict, queue=name)
    finally:
        sandbox.probe("mq_remove", name="/" + name)


@guarantee("ipc", "isolated", needs=["mnt"], references=NAMESPACE_FILES)
def test_no_foreign_namespace_file(sandbox: Sandbox, host: Host, verdict: Verdict) -> None:
    """No namespace file in the sandbox's mount table (a bound /proc/PID/ns/ipc, a volume of namespace files) opens
    another IPC namespace that setns accepts (under --nsc-attach: that the target itself could join)."""
    expect_no_foreign_namespace_file("ipc", sandbox, host, verdict)
