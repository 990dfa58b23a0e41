"""User namespace: the id mappings of a sandbox's own user namespace."""

from __future__ import annotations

import pytest

from fixtures.catalogue import Verdict, guarantee
from fixtures.declared import Expect
from fixtures.host import Host
from fixtures.sandbox import Sandbox


@guarantee("user", "isolated")
def test_id_maps_as_declared(sandbox: Sandbox, host: Host, verdict: Verdict, declared: Expect) -> None:
    """The sandbox's uid_map and gid_map, read inside, are exactly the lines its runtime declares."""
    wanted = {"uid_map": declared.uid_map, "gid_map": declared.gid_map}
    if all(lines is None for lines in wanted.values()):
        pytest.skip("the runtime declares no id maps ([expect] uid_map, gid_map)")
    verdict.require_own_namespace("user", sandbox, host)
    seen = sandbox.probe("id_maps")
    for name, lines in wanted.items():
        if lines is not None:
            verdict.expect(
                seen[name] == [list(line) for line in lines],
                f"the sandbox's {name} is not the one its runtime declares",
                **{f"{name} inside": seen[name], f"{name} declared": [list(line) for line in lines]},
            )
