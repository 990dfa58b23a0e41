"""How a check is declared (as data) and how it states its verdict (EXPECT and ASSERT, with evidence).

A check is a test function in isolation_checks/<namespace>.py, decorated with `guarantee`:

    @guarantee("uts", "isolated")
    def test_hostname_private(sandbox, host, verdict):
        '''A hostname set inside the sandbox is not seen on the host.'''

`when` says for which combinations the guarantee holds: "isolated" (the namespace is in the
combination), "shared" (it is not) or "any" (both; the check reads `expected`). `needs` lists
other namespaces the combination must isolate too, `needs_shared` ones it must share.
`attach_unsafe` says why the check must not run on a live target joined with --nsc-attach (it changes
what it cannot restore, ends processes, or rests on a premise a joined probe does not meet).
`ends_sandbox` marks a check that ends the combination's sandbox to observe what its end does: it
runs after the other checks of its combination, and the next check to need one gets a new sandbox.
`references` names what the guarantee answers: CVE ids, advisories, kernel documentation or man pages.
The catalogue of checks, docs/checks.md, is generated from these declarations (nsconform.catalogue).

A check of a hardening area (nsconform.areas) lives in isolation_checks/<area>.py and names its area
instead of a namespace:

    @guarantee(area="caps", declares=("capabilities",), rests_on="facts")
    def test_sets_as_declared(shipped, verdict):
        '''Root inside holds exactly the capabilities the runtime declares.'''

It runs once per session, on the runtime's as-shipped sandbox (the `shipped` fixture), not per combination.
`declares` names the [hardening] keys it judges (nsconform.runtimes.hardening): where the profile sets none
of them, what the check saw is reported as information (skipped, with its evidence), never as a verdict.
`rests_on` says what a pass rests on: "facts" (what the sandbox's kernel reports of it: /proc/PID/status,
mountinfo; under --nsc-attach, read from the target's own) or "behaviour" (an action tried inside; skipped
under --nsc-attach, whose joined probe has the harness's credentials, not the target's).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from nsconform.areas import ALL as AREAS
from nsconform.namespaces import ALL, Combination, combo_id
from nsconform.runtimes.hardening import AREA_KEYS

F = TypeVar("F", bound=Callable[..., Any])
VERDICT = pytest.StashKey["Verdict"]()  # a check's Verdict, on its item
WHEN = ("isolated", "shared", "any")
RESTS_ON = ("behaviour", "facts")  # what an area check's pass rests on
AREA_EXPECTED = "declared"  # an area result's `expected`: what the runtime's profile declares
EVIDENCE_LIMIT = 400
SHARED_VIEW_LOOKS = 3  # how often a shared view is looked at again before a difference counts
NOTHING = "nothing to examine"  # how every skip of a check that found nothing to judge begins


def skip_nothing(what: str) -> None:
    """SKIP a check that found nothing to examine (`what` says what it looked for): a check that examined
    nothing has no observation that could have failed, so it never passes."""
    __tracebackhide__ = True
    pytest.skip(f"{NOTHING}: {what}")


@dataclass(frozen=True)
class Guarantee:
    namespace: str
    when: str
    needs: frozenset[str] = frozenset()
    needs_shared: frozenset[str] = frozenset()
    rootful: bool = False  # needs real root on the host (not a rootless run)
    attach_unsafe: str = ""  # why it does not run on a live target (--nsc-attach); empty: it does
    declares: tuple[str, ...] = ()  # checks what the runtime declares: fields of its Expect, one at least set
    ends_sandbox: bool = False  # ends the combination's sandbox: runs last among its combination's checks
    references: tuple[str, ...] = ()  # CVE ids, advisories, kernel docs or man pages the guarantee answers
    host_view: str = ""  # what it needs to see of the sandbox's processes from the host; empty: nothing
    area: str = ""  # the hardening area it judges (then namespace is ""): runs on the as-shipped sandbox
    rests_on: str = "behaviour"  # an area check's basis: "behaviour" (an action tried) or "facts"
    name: str = ""
    doc: str = ""  # the guarantee: the check's docstring on one line

    @property
    def subject(self) -> str:
        """What its results are summarized under: its namespace, or its area."""
        return self.area or self.namespace

    def applies(self, combination: Combination) -> bool:
        if self.when == "isolated" and self.namespace not in combination:
            return False
        if self.when == "shared" and self.namespace in combination:
            return False
        return self.needs <= combination and not (self.needs_shared & combination)

    def expected(self, combination: Combination) -> str:
        if self.area:
            return AREA_EXPECTED
        return "isolated" if self.namespace in combination else "shared"

    def describe_needs(self) -> str:
        parts = [f"{self.namespace} {self.when}" if self.when != "any" else self.namespace]
        parts += [f"{ns} isolated" for ns in sorted(self.needs)]
        parts += [f"{ns} shared" for ns in sorted(self.needs_shared)]
        return ", ".join(parts)


def guarantee(
    namespace: str = "",
    when: str = "",
    *,
    area: str = "",
    rests_on: str = "behaviour",
    needs: Iterable[str] = (),
    needs_shared: Iterable[str] = (),
    rootful: bool = False,
    attach_unsafe: str = "",
    declares: Iterable[str] = (),
    ends_sandbox: bool = False,
    references: Iterable[str] = (),
    host_view: str = "",
) -> Callable[[F], F]:
    """Declare the decorated test function a check of `namespace`'s guarantee (or of a hardening `area`)."""
    if area:
        if namespace or when or needs or needs_shared or area not in AREAS or rests_on not in RESTS_ON:
            raise ValueError(
                f"bad area check declaration: area {area!r} (of {', '.join(AREAS)}), rests_on {rests_on!r}"
            )
        if not declares or not set(declares) <= set(AREA_KEYS[area]):
            raise ValueError(f"an area check declares which of [hardening] {', '.join(AREA_KEYS[area])} it judges")
    elif namespace not in ALL or when not in WHEN or not set(needs) | set(needs_shared) <= set(ALL):
        raise ValueError(f"bad guarantee declaration: {namespace!r}, {when!r}, {needs!r}, {needs_shared!r}")
    if isinstance(references, str):
        raise ValueError(f"bad guarantee declaration: references is a list of strings, not {references!r}")

    def declare(fn: F) -> F:
        module = fn.__module__.rsplit(".", 1)[-1]
        spec = Guarantee(
            namespace=namespace,
            when=when,
            needs=frozenset(needs),
            needs_shared=frozenset(needs_shared),
            rootful=rootful,
            attach_unsafe=attach_unsafe,
            declares=tuple(declares),
            ends_sandbox=ends_sandbox,
            references=tuple(references),
            host_view=host_view,
            area=area,
            rests_on=rests_on,
            name=f"{module}.{fn.__name__.removeprefix('test_')}",
            doc=" ".join((inspect.getdoc(fn) or "").split()),  # one sentence, as every report shows it
        )
        if not spec.doc:
            raise ValueError(f"{spec.name}: a check states its guarantee in its docstring")
        return pytest.mark.nsconform_check(spec)(fn)

    return declare


def spec_of(item_or_function: Any) -> Guarantee | None:
    """The Guarantee declared on a pytest item or test function, if any."""
    getter = getattr(item_or_function, "get_closest_marker", None)
    if getter is not None:
        mark = getter("nsconform_check")
        return mark.args[0] if mark else None
    for mark in getattr(item_or_function, "pytestmark", []):
        if mark.name == "nsconform_check":
            return mark.args[0]
    return None


def short(value: Any) -> Any:
    """Evidence stays short: long strings and lists are cut, with a note of how much."""
    if isinstance(value, str):
        return value if len(value) <= EVIDENCE_LIMIT else value[:EVIDENCE_LIMIT] + f"... ({len(value)} chars)"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        if len(items) > 20:
            return [short(v) for v in items[:20]] + [f"... ({len(items)} items)"]
        return [short(v) for v in items]
    if isinstance(value, dict):
        return {str(k): short(v) for k, v in list(value.items())[:40]}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return short(str(value))


@dataclass
class Verdict:
    """kselftest's EXPECT (note and go on) and ASSERT (stop now), with the evidence behind them."""

    combination: Combination
    expected: str
    evidence: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # why what the check sees is information, not a verdict (an area the runtime declares nothing in): its end
    # is a skip with this reason, its evidence kept
    information: str = ""

    @property
    def isolated(self) -> bool:
        return self.expected == "isolated"

    def note(self, **values: Any) -> None:
        """Record what was seen, for the report."""
        self.evidence.update({k: short(v) for k, v in values.items()})

    def expect(self, ok: bool, message: str, **values: Any) -> bool:
        """EXPECT: record a failed guarantee and carry on with the check."""
        self.note(**values)
        if not ok:
            self.failures.append(message)
        return ok

    def require(self, ok: bool, message: str, **values: Any) -> None:
        """ASSERT: a failed guarantee that makes the rest of the check meaningless."""
        __tracebackhide__ = True
        self.note(**values)
        if not ok:
            self.failures.append(message)
            self.raise_failures()

    def expect_each(self, judged: dict[str, bool], nothing: str, message: str, **values: Any) -> bool:
        """EXPECT every one of `judged` (what was examined -> whether it holds) to hold; with nothing judged at
        all, SKIP saying `nothing`: an empty set is no observation that could have failed."""
        __tracebackhide__ = True
        if not judged:
            skip_nothing(nothing)
        failing = [name for name, holds in judged.items() if not holds]
        return self.expect(not failing, message, **values, examined=sorted(judged), failing=failing)

    def same_or_different(self, what: str, inside: Any, outside: Any) -> bool:
        """EXPECT `inside` to differ from `outside` when isolated, to equal it when shared."""
        relation = "differ from" if self.isolated else "equal"
        return self.expect(
            (inside != outside) == self.isolated,
            f"{what}: expected the sandbox's to {relation} the host's (namespace {self.expected})",
            **{f"{what} inside": inside, f"{what} on host": outside},
        )

    def expect_shared_view(
        self, what: str, look_inside: Callable[[], set[Any]], look_host: Callable[[], set[Any]]
    ) -> bool:
        """EXPECT the sandbox to see what the host sees, bracketing each inside view by two host views.

        Whatever the host held throughout a look must be seen inside, and nothing the host never held
        during it, so that other processes creating or removing objects meanwhile cannot fake a
        difference. One that came and went between the two host views (another run's, anyone's) may
        still be seen inside only: a difference counts only where every look shows it, up to
        SHARED_VIEW_LOOKS looks. A namespace of the sandbox's own shows its difference every time. Where neither
        side shows anything, nothing was compared: SKIP.
        """
        __tracebackhide__ = True
        missing: set[Any] | None = None
        only_inside: set[Any] | None = None
        for _ in range(SHARED_VIEW_LOOKS):
            before, inside, after = look_host(), look_inside(), look_host()
            if not (before or inside or after):
                skip_nothing(f"neither the host nor the sandbox shows any {what}")
            steady, ever = before & after, before | after
            missing = steady - inside if missing is None else missing & (steady - inside)
            only_inside = inside - ever if only_inside is None else only_inside & (inside - ever)
            if not missing and not only_inside:
                break
        return self.expect(
            not missing and not only_inside,
            f"the sandbox's {what} differ from the host's",
            **{f"{what} only on host": missing, f"{what} only inside": only_inside},
        )

    def expect_equal_fields(self, inside: dict[str, Any], outside: dict[str, Any], fields: tuple[str, ...]) -> None:
        """EXPECT each of `fields` to read the same inside the sandbox as on the host (a shared namespace)."""
        for name in fields:
            self.expect(
                inside[name] == outside[name],
                f"the sandbox's {name} differs from the host's",
                **{f"{name} inside": inside[name], f"{name} on host": outside[name]},
            )

    def identity(self, ns: str, sandbox: Any, host: Any) -> bool:
        """First line of evidence: the namespace inode differs from the host's exactly when isolated.

        A sandbox with a kernel of its own (nsconform.sandbox.sandbox.Sandbox.own_kernel) has no namespace of
        the host's kernel, isolated or not: its identity is that other kernel, seen by its behaviour."""
        if sandbox.own_kernel:
            self.note(kernel_inside=sandbox.own_kernel, kernel_on_host=sandbox.host_kernel)
            if not self.isolated:
                pytest.skip(
                    f"the sandbox runs a kernel of its own, whose {ns} namespace is never the host's by identity: "
                    "the checks of the shared view decide"
                )
            return True
        inside, outside = sandbox.ns_inode(ns), host.ns_inode(ns)
        if inside is None and outside is None:
            skip_nothing(f"neither the host nor the sandbox has a {ns} namespace to compare (no /proc/PID/ns/{ns})")
        return self.same_or_different(f"{ns} namespace", inside, outside)

    def require_own_namespace(self, ns: str, sandbox: Any, host: Any) -> None:
        """ASSERT the sandbox has its own `ns` namespace before a probe writes anything inside it.

        Where the runtime only claims the namespace, a write inside would land on the host. In a sandbox with
        a kernel of its own, every write inside lands in that kernel.
        """
        __tracebackhide__ = True
        if sandbox.own_kernel:
            self.note(kernel_inside=sandbox.own_kernel, kernel_on_host=sandbox.host_kernel)
            return
        inside, outside = sandbox.ns_inode(ns), host.ns_inode(ns)
        self.require(
            inside != outside,
            f"the sandbox shares the host's {ns} namespace (same inode), though {ns} is claimed isolated",
            **{f"{ns} namespace inside": inside, f"{ns} namespace on host": outside},
        )

    def raise_failures(self) -> None:
        __tracebackhide__ = True
        if self.information:
            seen = f" (it would say: {'; '.join(self.failures)})" if self.failures else ""
            pytest.skip(f"{self.information}: what it saw is information, not a verdict{seen}")
        if self.failures:
            where = combo_id(self.combination)
            raise AssertionError(f"[{where}] " + "; ".join(self.failures))
