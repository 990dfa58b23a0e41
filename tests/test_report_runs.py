"""Reports of real runs: the baseline gate, usage errors at start, and xdist (only the controller writes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from nsconform.host.mounts import journaled_mount
from nsconform.hygiene import naming
from nsconform.inside import probe
from nsconform.report.results import label
from nsconform.report.writing import VIEWS
from nsconform.sandbox.native import NativeRuntime
from tests.chromium import dump_dom
from tests.conftest import ROOT, check_node
from tests.test_reliability import run_pytest

LEAKY_UTS = NativeRuntime(omit=frozenset({"uts"}))
SUITE = str(ROOT / "isolation_checks")


def saved(pytester: pytest.Pytester, name: str) -> Path:
    """The last run's conformance.json, kept as `name` (a baseline for the next run)."""
    return Path(shutil.copy(pytester.path / "reports" / "conformance.json", pytester.path / name))


def test_leaky_runtime_against_sound_baseline_fails_and_names_regressions(run_suite, pytester) -> None:
    """Every uts result of a combination claiming uts regresses on a runtime that omits uts; the
    session fails, and each regression is named in the terminal, summary.md and conformance.json."""
    sound = run_suite("--nsc-namespaces", "uts,ipc", SUITE)
    assert set(VIEWS) <= {p.name for p in (pytester.path / "reports").iterdir()}
    baseline = saved(pytester, "sound.json")
    leaky = run_suite("--nsc-namespaces", "uts,ipc", "--nsc-baseline", str(baseline), SUITE, runtime=LEAKY_UTS)
    expected = {
        label(r)
        for r in sound.report["results"]
        if r["namespace"] == "uts" and "uts" in (r["combination"] or ()) and r["outcome"] == "passed"
    }
    regressed = {label(c) for c in leaky.report["baseline"]["regressions"]}
    assert leaky.ret != 0
    assert expected and regressed == expected
    assert "uts.hostname_private[uts]" in regressed
    summary = (pytester.path / "reports" / "summary.md").read_text()
    assert f"{len(regressed)} regressions" in summary
    for name in regressed:
        assert f"`{name}`" in summary
        assert f"REGRESSED {name}: passed -> failed" in leaky.output
    assert f"{len(regressed)} regressions, 0 improvements, 0 passes now skipped (no regression): the session fails" in (
        leaky.output
    )


def test_missing_result_fails_the_session_though_every_test_passed(run_suite, pytester) -> None:
    """Running less than the baseline ran: what is missing is a regression, and the session fails."""
    run_suite("--nsc-namespaces", "uts", SUITE)
    baseline = saved(pytester, "full.json")
    partial = run_suite(
        "--nsc-namespaces", "uts", "--nsc-baseline", str(baseline), check_node("uts.hostname_private", "uts")
    )
    assert partial.outcomes("uts.hostname_private") == {"uts": "passed"}
    assert "1 passed" in partial.output
    assert partial.ret == pytest.ExitCode.TESTS_FAILED
    missing = {label(c) for c in partial.report["baseline"]["regressions"] if c["now"] == "missing"}
    assert "uts.names_shared[none]" in missing and "uts.hostname_private[uts]" not in missing
    assert "REGRESSED uts.names_shared[none]: passed -> missing" in partial.output


def test_fixed_runtime_lists_improvements_and_passes(run_suite, pytester) -> None:
    run_suite("--nsc-namespaces", "uts", SUITE, runtime=LEAKY_UTS)
    baseline = saved(pytester, "leaky.json")
    fixed = run_suite("--nsc-namespaces", "uts", "--nsc-baseline", str(baseline), SUITE)
    improved = {label(c) for c in fixed.report["baseline"]["improvements"]}
    assert fixed.ret == 0, fixed.output
    assert "uts.hostname_private[uts]" in improved and not fixed.report["baseline"]["regressions"]
    assert "IMPROVED uts.hostname_private[uts]: failed -> passed" in fixed.output
    assert "0 regressions" in (pytester.path / "reports" / "summary.md").read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": "other/2", "results": []}', "schema 'other/2', not 'nsconform/1'"),
        ("{not json", "not JSON"),
        ('{"schema": "nsconform/1", "results": [{"check": 1}]}', "not a valid nsconform/1 report (schema.json): "),
    ],
)
def test_bad_baseline_is_a_usage_error_at_start(run_suite, pytester, content: str, message: str) -> None:
    path = pytester.path / "baseline.json"
    path.write_text(content)
    run = run_suite("--nsc-namespaces", "uts", "--nsc-baseline", str(path))
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--nsc-baseline {path}: " in run.output and message in run.output
    assert run.report == {} and "passed" not in run.output


def test_unwritable_report_dir_is_a_usage_error_at_start(run_suite, pytester) -> None:
    """Reports under a regular file cannot be written: said at start, before any sandbox runs."""
    blocker = pytester.path / "a-file"
    blocker.write_text("")
    run = run_suite("--nsc-namespaces", "uts", "--nsc-report-dir", str(blocker / "reports"))
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--nsc-report-dir {blocker / 'reports'}: {blocker} is not a directory" in run.output
    assert "passed" not in run.output


def test_option_value_after_a_space_that_misleads_pytest_is_a_usage_error(tmp_path: Path) -> None:
    """`--nsc-report-dir DIR`, DIR an existing directory outside the project: pytest takes DIR for a path to test
    while it chooses its rootdir (before it knows the option), and so finds no configuration. Instead of
    running whatever it then finds (the project's own tests), the session stops: pytest itself where the
    checkout's configuration, which enables nsconform, was not found; nsconform saying to write
    `--nsc-report-dir=DIR` where the plugin was enabled anyway (`-p nsconform.plugin`). With '=', it works."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "--nsc-namespaces=uts"]
    for enable in ([], ["-p", "nsconform.plugin"]):
        spaced = subprocess.run(
            [*command, *enable, "--nsc-report-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
        )
        assert spaced.returncode == pytest.ExitCode.USAGE_ERROR, spaced.stdout
        assert "test_" not in spaced.stdout  # nothing was collected
    assert f"write --nsc-report-dir={tmp_path}" in spaced.stderr
    joined = subprocess.run([*command, f"--nsc-report-dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert joined.returncode == pytest.ExitCode.OK, joined.stderr
    assert "isolation_checks/uts.py::test_hostname_private[uts]" in joined.stdout


def test_xdist_run_writes_every_report_from_the_controller_only(tmp_path: Path) -> None:
    """A real `-n 2` run: both workers run checks, the controller alone writes the four reports (each
    once, no temporary file left), they hold every result, and Chromium shows every check's name."""
    out, log = tmp_path / "reports", tmp_path / "writes.log"
    command = [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider", "-p", "tests.writespy"]
    command += ["--nsc-namespaces", "uts,pid", "--nsc-combinations", "singles", "--nsc-report-dir", str(out)]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "NSCONFORM_WRITE_LOG": str(log)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "[gw0]" in output and "[gw1]" in output
    writes = [line.split() for line in log.read_text().splitlines()]
    assert sorted(name for _, name in writes) == sorted(VIEWS)
    assert {int(pid) for pid, _ in writes} == {process.pid}
    assert sorted(p.name for p in out.iterdir()) == sorted(VIEWS)
    report = json.loads((out / "conformance.json").read_text())
    ran = [line for line in output.splitlines() if " PASSED " in line or " SKIPPED " in line]
    assert len(report["results"]) == len(ran) > 0
    cases = ET.parse(out / "junit.xml").getroot().findall("./testsuite/testcase")
    assert len(cases) == len(report["results"])
    dom = dump_dom(out / "conformance.html")
    for check in {r["check"] for r in report["results"]}:
        assert check in dom


def test_a_check_on_no_combination_is_n_a_in_its_id_and_every_report(run_suite, pytester) -> None:
    """`none` is the empty combination; a check that applies to no combination of the run (the native runtime
    declares no hostname) has one skipped result, `[n/a]` in its pytest id and in every report, recorded with
    no combination (null), never as the empty one."""
    run = run_suite("--nsc-namespaces", "uts", "--nsc-combinations", "singles", SUITE)
    na = [r for r in run.report["results"] if r["check"] == "uts.hostname_as_declared"]
    assert [(r["id"].rsplit("[", 1)[1], r["combination"], r["outcome"]) for r in na] == [("n/a]", None, "skipped")]
    assert {label(r) for r in run.report["results"]} >= {"uts.hostname_as_declared[n/a]", "uts.names_shared[none]"}
    reports = pytester.path / "reports"
    assert "uts.hostname_as_declared[n/a]" in (reports / "summary.md").read_text()
    assert "uts.hostname_as_declared[none]" not in (reports / "summary.md").read_text()
    cases = {case.get("name") for case in ET.parse(reports / "junit.xml").iter("testcase")}
    assert "uts.hostname_as_declared[n/a]" in cases
    assert "uts.hostname_as_declared[none]" not in cases


def test_guarantee_sentences_read_as_text_in_every_report(run_suite, pytester) -> None:
    """A check's guarantee is its docstring on one line: no report shows a line break as a literal escape."""
    run = run_suite("--nsc-namespaces", "mnt,net", "--nsc-combinations", "singles", SUITE)
    sentences = run.report["checks"]
    assert sentences["mnt.host_mount_does_not_propagate"].startswith("A mount the host makes under its shared mount")
    reports = pytester.path / "reports"
    page, markdown = (reports / "conformance.html").read_text(), (reports / "summary.md").read_text()
    for sentence in sentences.values():
        assert "\n" not in sentence
    assert "\\n" not in markdown
    assert "\\n" not in page.split('<script type="application/json"')[0]


# -- what a session writes, and what it leaves ---------------------------------------------------


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


class InterruptAtFirstCheck:
    """The session is stopped as the first check is set up (as by Ctrl-C, which pytester would re-raise):
    it ends before any result."""

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        pytest.exit("stopped before any result")


def test_a_session_that_ran_no_check_leaves_the_report_directory_as_it_was(run_suite, pytester) -> None:
    """1. a run's reports, and a README of the user's, in the report directory; 2. with that very report for
    --nsc-baseline: collect-only, everything deselected, interrupted before a result
    3. EXPECT the directory byte for byte as it was after each; 4. a run with results and failures (a leaky
    runtime) against it: EXPECT its reports written, the regressions against the report it replaced in them"""
    first = run_suite("--nsc-namespaces", "uts", SUITE)
    assert first.ret == pytest.ExitCode.OK, first.output
    reports = pytester.path / "reports"
    (reports / "README.md").write_text("the user's notes on these reports\n")
    before = snapshot(reports)
    baseline = ("--nsc-baseline", str(reports / "conformance.json"))
    for args, plugins, status in (
        (("--collect-only", "-q"), (), pytest.ExitCode.OK),
        (("-k", "no_such_check"), (), pytest.ExitCode.NO_TESTS_COLLECTED),
        ((), (InterruptAtFirstCheck(),), pytest.ExitCode.INTERRUPTED),
    ):
        run = run_suite("--nsc-namespaces", "uts", *baseline, *args, SUITE, plugins=plugins)
        assert run.ret == status, (args, run.output[-3000:])
        assert snapshot(reports) == before, args
        assert "regression" not in run.output, args
    leaky = run_suite("--nsc-namespaces", "uts", *baseline, SUITE, runtime=LEAKY_UTS)
    assert leaky.ret == pytest.ExitCode.TESTS_FAILED
    assert leaky.report["baseline"]["regressions"] and leaky.report["summary"]["uts"]["verdict"] == "violated"
    assert (reports / "README.md").read_bytes() == before["README.md"]
    assert sorted(snapshot(reports)) == sorted(before)


@contextmanager
def small_filesystem(point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `point` for the block, journaled as the harness journals its mounts."""
    point.mkdir()
    source = naming.unique("tmpfs")
    with journaled_mount(str(point), source, lambda: probe.mount(source, str(point), "tmpfs", 0, f"size={size}")):
        yield point


def fill(directory: Path, leave: int) -> None:
    """Take the free space of `directory`'s filesystem but `leave` bytes (rounded down to whole pages)."""
    with open(directory / "filler", "wb", buffering=0) as f, suppress(OSError):  # ENOSPC: full
        while True:
            f.write(b"\0" * 4096)
    stats = os.statvfs(directory)
    filler = directory / "filler"
    os.truncate(filler, max(0, filler.stat().st_size - (leave // 4096) * 4096 + stats.f_bavail * stats.f_frsize))


FILES_KEPT = "its files are as they were"


def test_a_full_report_filesystem_ends_the_session_with_one_line_and_the_earlier_set(tmp_path: Path) -> None:
    """1. a run's reports, a README and a file filling the rest, on a small tmpfs; 2. a run with no space
    left, and one with space for some of its reports but not all
    3. EXPECT exit status 4, one line naming the directory and ENOSPC, no traceback, the directory byte for
    byte as it was (no report of the new set among the old, no temporary file)"""
    args = ("--nsc-namespaces", "uts", "-k", "hostname_private")
    with small_filesystem(tmp_path / "small", "1m") as reports:
        first = run_pytest(*args, f"--nsc-report-dir={reports}")
        assert first.returncode == 0, first.stdout[-3000:]
        (reports / "README.md").write_text("the user's notes on these reports\n")
        sizes = {name: (reports / name).stat().st_size for name in VIEWS}
        for leave in (0, sizes["conformance.json"] + sizes["junit.xml"] + 4096):
            fill(reports, leave)
            before = snapshot(reports)
            run = run_pytest(*args, f"--nsc-report-dir={reports}")
            said = f"nsconform: reports not written in {reports}: No space left on device (ENOSPC); " + FILES_KEPT
            assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout[-3000:]
            assert said in run.stdout.splitlines() and "Traceback" not in run.stdout + run.stderr, run.stdout[-3000:]
            assert snapshot(reports) == before, leave
