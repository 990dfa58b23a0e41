"""The hardening areas on real runtimes: sound as-shipped sandboxes are conformant, and each deliberate
weakening of one (tests/shipped_spec.py) is violated in exactly its area."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsconform.runtimes.bundles import capabilities
from nsconform.runtimes.runtime import PROFILES_DIR, ProfileRuntime, declared_hardening, resolve
from nsconform.sandbox.sandbox import Sandbox
from tests.conftest import ROOT, SuiteRun
from tests.runtime_profiles import profile_runtime
from tests.shipped_spec import FILTERED

AREA_CHECKS = [str(ROOT / "isolation_checks" / f"{area}.py") for area in ("caps", "seccomp", "paths")]
AREAS = ("caps", "seccomp", "paths")
SCRIPT = Path(__file__).with_name("shipped_spec.py")


def weakened(
    change: str, *, filter_declared: bool = False, runtime: str = "runc", args: tuple[str, ...] = ()
) -> ProfileRuntime:
    """The bundled `runtime` profile whose as-shipped bundle is its `spec` with one `change` (shipped_spec.py, with
    `args`); `filter_declared`: the profile also declares the seccomp filter the `filter` change installs."""
    args = tuple(capabilities()) if change == "privileged" else args
    spec = ["/usr/bin/python3", str(SCRIPT), runtime, "{bundle}", change, *args]
    text = (PROFILES_DIR / f"{runtime}.toml").read_text()
    own = f'spec = ["{runtime}", "spec", "--bundle", "{{bundle}}"]'
    assert own in text
    text = text.replace(own, f"spec = {json.dumps(spec)}").replace(
        f'name = "{runtime}"', f'name = "{runtime}-{change}"'
    )
    if filter_declared:  # [hardening] is the profile's last table: these keys land in it
        text += f'seccomp = "filter"\nmust_refuse = {json.dumps(list(FILTERED))}\n'
    return profile_runtime(text, f"{runtime}-{change}")


def area_verdicts(run: SuiteRun) -> dict[str, str]:
    return {area: run.verdicts()[area] for area in AREAS if area in run.report["summary"]}


def errors(run: SuiteRun) -> list[str]:
    return [f"{r['id']}: {r['reason'][:300]}" for r in run.report["results"] if r["outcome"] == "error"]


def require(runtime) -> None:
    why = runtime.unavailable()
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("name", ["runc", "crun", "podman"])
def test_sound_runtime_is_conformant_in_every_area_it_declares(name: str, run_suite) -> None:
    """The bundled profile's as-shipped sandbox keeps what its [hardening] declares: every declared area
    conformant, resting on behaviour, no error; the areas it declares nothing in are information (skipped)."""
    runtime = resolve(name, ROOT)
    require(runtime)
    declared = [area for area in declared_hardening(runtime).areas if area in AREAS]
    run = run_suite("--nsc-runtime", name, "--nsc-areas", ",".join(AREAS), *AREA_CHECKS)
    assert not errors(run), run.output
    assert area_verdicts(run) == {a: "conformant" if a in declared else "untested" for a in AREAS}, run.output
    assert all(run.report["summary"][a]["basis"]["rests_on"] == "behaviour" for a in declared)
    undeclared = [r for r in run.report["results"] if r["area"] not in declared]
    assert all(r["outcome"] == "skipped" for r in undeclared), undeclared


def test_runc_with_a_declared_filter_is_conformant_in_seccomp(run_suite) -> None:
    """A runc bundle with a seccomp filter, declared: the mode and every refusal that can be told apart pass."""
    runtime = weakened("filter", filter_declared=True)
    require(runtime)
    run = run_suite("--nsc-areas", "caps,seccomp,paths", *AREA_CHECKS, runtime=runtime)
    assert not errors(run), run.output
    assert area_verdicts(run) == dict.fromkeys(AREAS, "conformant"), run.output
    refused = next(r for r in run.report["results"] if r["check"] == "seccomp.refuses_declared")["evidence"]
    assert "unshare" in refused["refused"], refused  # unshare(0) succeeds unfiltered: always told apart


# change, the area it must be violated in alone, the checks that fail there
ONE_WEAKENING = [
    ("dac_read_search", "caps", {"caps.sets_as_declared", "caps.undeclared_unusable"}),
    ("new_privs", "caps", {"caps.no_new_privs_as_declared"}),
    ("unmasked", "paths", {"paths.masked_by_a_mount", "paths.masked_show_nothing"}),
    ("proc_sys_writable", "paths", {"paths.readonly_mounted_so", "paths.readonly_not_writable"}),
    ("sound", "seccomp", {"seccomp.mode_as_declared", "seccomp.refuses_declared"}),  # the filter declared, absent
]
CONTROLLED = {check for _, _, checks in ONE_WEAKENING for check in checks}  # test_negative_controls.py counts them


@pytest.mark.parametrize(("change", "area", "violated_checks"), ONE_WEAKENING)
def test_one_weakening_is_violated_in_exactly_its_area(
    change: str, area: str, violated_checks: set[str], run_suite
) -> None:
    """A capability added, masked paths unmasked, /proc/sys writable, the declared filter missing: each is
    violated in its own area, by the checks that judge it, and every other area stays conformant."""
    runtime = weakened(change, filter_declared=area == "seccomp")
    require(runtime)
    run = run_suite("--nsc-areas", ",".join(AREAS), *AREA_CHECKS, runtime=runtime)
    assert not errors(run), run.output
    declared = [area for area in declared_hardening(runtime).areas if area in AREAS]
    expected = {a: "violated" if a == area else "conformant" if a in declared else "untested" for a in AREAS}
    assert area_verdicts(run) == expected, run.output
    failed = {r["check"] for r in run.report["results"] if r["outcome"] == "failed"}
    assert failed == violated_checks, run.output


def test_privileged_sandbox_is_violated_in_caps_paths_and_seccomp(run_suite) -> None:
    """What `docker run --privileged` does to a bundle (every capability of the host's bounding set, nothing
    masked or read-only, no filter), on runc declaring its defaults and a filter: caps, paths and seccomp violated."""
    runtime = weakened("privileged", filter_declared=True)
    require(runtime)
    run = run_suite("--nsc-areas", ",".join(AREAS), *AREA_CHECKS, runtime=runtime)
    assert not errors(run), run.output
    assert area_verdicts(run) == dict.fromkeys(AREAS, "violated"), run.output
    usable = next(r for r in run.report["results"] if r["check"] == "caps.undeclared_unusable")["evidence"]["tried"]
    assert usable == dict.fromkeys(("NET_RAW", "DAC_READ_SEARCH", "SYS_ADMIN"), "ok"), usable


@pytest.mark.parametrize(("change", "caps"), [("sound", "conformant"), ("dac_read_search", "violated")])
def test_attach_judges_the_targets_own_facts_and_skips_behaviour(change: str, caps: str, run_suite) -> None:
    """--nsc-attach to a running as-shipped runc container: the facts checks judge the target by its own
    /proc/PID/status and mountinfo (a capability added to it: caps violated); the behavioural ones skip."""
    runtime = weakened(change)
    require(runtime)
    target = Sandbox(runtime.launch_shipped(), 10.0)
    try:
        run = run_suite(
            "--nsc-attach", str(target.pid), "--nsc-runtime", "runc", "--nsc-areas", "caps,paths", *AREA_CHECKS
        )
    finally:
        target.close()
    assert not errors(run), run.output
    assert area_verdicts(run) == {"caps": caps, "paths": "conformant"}, run.output
    for r in run.report["results"]:
        assert (r["outcome"] == "skipped") == (r["rests_on"] == "behaviour"), r
        if r["rests_on"] == "behaviour":
            assert "the joined probe has the harness's credentials" in r["reason"]


def test_areas_leave_the_host_as_it_was(run_suite) -> None:
    """The areas' checks and their as-shipped sandboxes (the twin too) leave nothing behind: the host audit,
    which compares the host before and after the run, finds nothing this run left."""
    runtime = weakened("filter", filter_declared=True)
    require(runtime)
    run = run_suite("--nsc-areas", ",".join(AREAS), *AREA_CHECKS, runtime=runtime, audit=True)
    assert run.ret == 0, run.output
    assert run.report["host_audit"]["checked"] and not run.report["host_audit"]["left"], run.report["host_audit"]


def test_area_selection(run_suite) -> None:
    """--nsc-areas: an unknown area is a usage error; on the native runtime no area is selected by default, and
    one named is skipped, saying that the native runtime has no as-shipped sandbox."""
    bad = run_suite("--nsc-areas", "caps,cpas", *AREA_CHECKS)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "unknown area cpas" in bad.output
    default = run_suite(*AREA_CHECKS)
    assert default.ret == pytest.ExitCode.NO_TESTS_COLLECTED and not default.report, default.output
    named = run_suite("--nsc-areas", "caps", *AREA_CHECKS)
    assert set(named.verdicts()) >= {"caps"} and "seccomp" not in named.report["summary"]
    assert {r["outcome"] for r in named.report["results"]} == {"skipped"}
    assert all("runtime native has no as-shipped configuration" in r["reason"] for r in named.report["results"])
