"""The pytest plugin: options, the combination matrix, scheduling, verdicts and reports.

Loaded only where asked: the checkout's pytest.ini, the `nsconform` command, or `-p nsconform.plugin`
(or `pytest_plugins = ["nsconform.plugin"]`) in a project that wants the fixtures (nsconform.fixtures,
all named `nsconform_*`). Elsewhere nsconform registers nothing: no option, fixture, hook or output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nsconform import collector
from nsconform.guarantees import VERDICT, Guarantee, spec_of
from nsconform.hygiene import journal
from nsconform.hygiene.hostguard import AUDIT, HostGuard
from nsconform.locations import checks_dir
from nsconform.namespaces import NA, Combination, combo_id
from nsconform.report.baseline import Baseline, Comparison
from nsconform.report.conformance import ReportError, describe_runtime, document
from nsconform.report.results import ResultBook, plain
from nsconform.report.writing import ReportDirError, ReportWriteError, check_writable, write_reports
from nsconform.runtimes.runtime import always_isolated, attached
from nsconform.sandbox.sandbox import SandboxError
from nsconform.settings import SETTINGS, Settings, add_options, as_written, from_config, rootless

UNCHECKED = "nsconform_unchecked"
SHIPPED = "shipped"  # the id of an area check's one parameter: the runtime's as-shipped sandbox
ATTACH_AREAS = (
    "the joined probe has the harness's credentials, not the target's, so what it can do says nothing of the "
    "target; the area's facts checks judge the target by its own /proc/PID/status and mountinfo"
)
NOTHING_TO_REPORT = (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR)  # sessions that write no report
HARDENING_SEEN = pytest.StashKey[list[list[str]]]()  # the combinations whose sandbox's hardening was recorded
JOURNAL = pytest.StashKey[journal.Journal]()
pytest_plugins = ("nsconform.fixtures.sandboxes", "nsconform.fixtures.observers", "nsconform.fixtures.shipped")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under xdist's default `--dist load`, all checks of one combination go to one worker (nsconform.scheduling)."""
    if config.getoption("dist") != "load":
        return None
    from nsconform.scheduling import CombinationScheduling

    return CombinationScheduling(config, log)


@pytest.hookimpl(tryfirst=True)  # before pytest's own plugins: see nsconform.collector
def pytest_configure(config: pytest.Config) -> None:
    collector.register(config)
    config.addinivalue_line("markers", "nsconform_check(spec): a conformance check (set by @guarantee)")
    config.addinivalue_line("markers", f"{UNCHECKED}: a check of a namespace outside --nsc-namespaces (deselected)")
    try:
        config.stash[SETTINGS] = from_config(config)
        config.stash[HARDENING_SEEN] = []
        config.pluginmanager.register(Recorder(config), "nsconform-recorder")
    except pytest.UsageError as e:
        raise pytest.UsageError(as_written(config, str(e))) from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker journals for its controller's run
        config.stash[JOURNAL] = journal.begin(workerinput["nsconform_run"], workerinput["workerid"])
    else:  # the controller, or the only process of a serial run
        try:
            journal.directory()
        except (OSError, journal.JournalError) as e:
            raise pytest.UsageError(f"nsconform's journal directory: {e}") from None
        config.stash[JOURNAL] = journal.begin(journal.new_run(), "controller")
        guard = HostGuard(config, config.stash[JOURNAL].run, check=not config.option.nsc_no_host_audit)
        config.pluginmanager.register(guard, "nsconform-hostguard")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Each xdist worker journals under its controller's run id (nsconform.hygiene.journal)."""
    node.workerinput["nsconform_run"] = node.config.stash[JOURNAL].run


def pytest_unconfigure(config: pytest.Config) -> None:
    if JOURNAL in config.stash:
        journal.end(config.stash[JOURNAL])


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """The checks are collected wherever they are installed, whatever the session's `python_files` says
    (`pytest -p nsconform.plugin --pyargs nsconform.isolation_checks` works in any project)."""
    if file_path.suffix != ".py" or file_path.name in ("__init__.py", "conftest.py"):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest's own python plugin collects it
    if file_path.resolve().parent != checks_dir():
        return None
    return pytest.Module.from_parent(parent, path=file_path)


# -- the matrix -------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `combination` with every combination the check's guarantee applies to."""
    if "nsconform_combination" not in metafunc.fixturenames:
        return
    settings = metafunc.config.stash[SETTINGS]
    spec = spec_of(metafunc.function)
    if spec is None:
        metafunc.parametrize("nsconform_combination", settings.combinations, ids=combo_id)
        return
    if spec.area:
        metafunc.parametrize("nsconform_combination", [area_param(spec, settings)], ids=[SHIPPED])
        return
    if spec.namespace not in settings.namespaces:
        metafunc.parametrize(
            "nsconform_combination",
            [pytest.param(frozenset(), marks=pytest.mark.nsconform_unchecked)],
            ids=["unchecked"],
        )
        return
    declared = settings.runtime.expect
    if spec.declares and all(getattr(declared, field) is None for field in spec.declares):
        reason = f"{spec.name}: the runtime declares no {' or '.join(spec.declares)} ([expect] in its profile)"
        metafunc.parametrize(
            "nsconform_combination", [pytest.param(frozenset(), marks=pytest.mark.skip(reason=reason))], ids=[NA]
        )
        return
    marks = []
    if spec.rootful and os.geteuid() != 0:
        marks.append(pytest.mark.skip(reason=f"{spec.name} needs root on the host; this run is rootless"))
    if spec.attach_unsafe and attached(settings.runtime):
        marks.append(
            pytest.mark.skip(reason=f"{spec.name} does not run on a live target (--nsc-attach): {spec.attach_unsafe}")
        )
    combos = [
        pytest.param(c, marks=marks + unbuildable(spec, c, settings) + unsupported(c))
        for c in settings.combinations
        if spec.applies(c)
    ]
    if not combos:
        reason = (
            f"{spec.name} needs {spec.describe_needs()}: no combination of --nsc-namespaces "
            f"{','.join(settings.namespaces)} with --nsc-combinations {settings.mode} has that"
        )
        combos = [pytest.param(frozenset(), marks=pytest.mark.skip(reason=reason), id=NA)]
    metafunc.parametrize("nsconform_combination", combos, ids=combo_id)


def area_param(spec: Guarantee, settings: Settings) -> Any:
    """An area check's one parameter: the as-shipped sandbox, whose namespaces are the runtime's declared ones
    (`shipped` in its id, so that xdist runs every area check on one worker, in one sandbox)."""
    if spec.area not in settings.areas:
        return pytest.param(frozenset(), marks=pytest.mark.nsconform_unchecked)
    marks = []
    if spec.rootful and os.geteuid() != 0:
        marks.append(pytest.mark.skip(reason=f"{spec.name} needs root on the host; this run is rootless"))
    if spec.rests_on == "behaviour" and attached(settings.runtime):
        marks.append(
            pytest.mark.skip(reason=f"{spec.name} does not run on a live target (--nsc-attach): {ATTACH_AREAS}")
        )
    return pytest.param(frozenset(settings.runtime.isolates or ()), marks=marks)


def unbuildable(spec: Guarantee, combination: Combination, settings: Settings) -> list[pytest.MarkDecorator]:
    """A skip where the check needs a namespace shared that the runtime isolates in every sandbox."""
    forced = always_isolated(settings.runtime) - combination
    shared = ({spec.namespace} if spec.expected(combination) == "shared" else set()) | spec.needs_shared
    clash = sorted(shared & forced)
    if not clash:
        return []
    names = ", ".join(clash)
    run = "in this rootless run, " if rootless() else ""
    reason = (
        f"{spec.name} needs {names} shared, but {run}runtime {settings.runtime.name} "
        f"gives every sandbox its own {names} namespace"
    )
    return [pytest.mark.skip(reason=reason)]


def unsupported(combination: Combination) -> list[pytest.MarkDecorator]:
    """A skip for a combination that isolates a namespace type this kernel does not have."""
    missing = sorted(ns for ns in combination if not os.path.exists(f"/proc/self/ns/{ns}"))
    if not missing:
        return []
    return [pytest.mark.skip(reason=f"this kernel has no {', '.join(missing)} namespace (no /proc/self/ns/ entry)")]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop checks of unchecked namespaces; run each combination's tests together (one sandbox each), those
    that end its sandbox last."""
    unchecked = [item for item in items if item.get_closest_marker(UNCHECKED)]
    if unchecked:
        config.hook.pytest_deselected(items=unchecked)
        items[:] = [item for item in items if not item.get_closest_marker(UNCHECKED)]
    order = {combo_id(c): i for i, c in enumerate(config.stash[SETTINGS].combinations)}

    def position(item: pytest.Item) -> tuple[int, bool]:
        combination = combination_of(item)
        spec = spec_of(item)
        ends = spec is not None and spec.ends_sandbox
        if spec is not None and spec.area:  # the areas after every namespace's combination
            return len(order) + 1, ends
        return (-1 if combination is None else order.get(combo_id(combination), len(order))), ends

    items.sort(key=position)


def combination_of(item: pytest.Item) -> Combination | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("nsconform_combination") if callspec else None


def not_applicable(item: pytest.Item) -> bool:
    """Whether the item is a check's one result on no combination (its id `[n/a]`): none of the run's applies."""
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.id == NA


# -- verdicts and reports -----------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A check's EXPECT failures fail it once it has run to its end."""
    result = yield
    if VERDICT in item.stash:
        item.stash[VERDICT].raise_failures()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report: pytest.TestReport = yield
    spec = spec_of(item)
    combination = combination_of(item)
    if spec is None or combination is None or (report.passed and report.when != "call"):
        return report  # a passing setup or teardown adds nothing to the result the call's record gives
    outcome, reason, later = classify(report, call)
    evidence = item.stash[VERDICT].evidence if VERDICT in item.stash else {}
    record = {
        "id": item.nodeid,
        "check": spec.name,
        "namespace": spec.namespace or None,
        "combination": None if not_applicable(item) else sorted(combination),
        "expected": spec.expected(combination),
        "guarantee": spec.doc,
        "phase": report.when,
        "outcome": outcome,
        "reason": reason,
        "evidence": {**evidence, "raised after the error": later} if later else evidence,
        "duration_s": round(report.duration, 6),
    }
    if spec.area:
        record |= {"area": spec.area, "rests_on": spec.rests_on}
    sandbox = getattr(item, "funcargs", {}).get("nsconform_sandbox")
    hardening_seen = item.config.stash[HARDENING_SEEN]
    if sandbox is not None and record["combination"] not in hardening_seen:
        hardening_seen.append(record["combination"])  # once per combination and process: the controller merges
        record["hardening"] = sandbox.hello.get("hardening")
    report.user_properties = [*report.user_properties, ("nsconform", record)]
    return report


def classify(report: pytest.TestReport, call: pytest.CallInfo[None]) -> tuple[str, str, list[str]]:
    """A result's outcome and reason (an AssertionError is a failed guarantee, anything else an error), and what
    was raised after the sandbox failed (`first_cause`)."""
    if report.passed:
        return "passed", "", []
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return "skipped", reason.removeprefix("Skipped: "), []
    excinfo = call.excinfo
    if excinfo is None:
        return "error", str(report.longrepr)[:2000], []
    first, later = first_cause(excinfo.value)
    if first is not excinfo.value:
        return "error", str(first)[:2000], later
    if isinstance(first, AssertionError) and report.when == "call":
        return "failed", str(first)[:2000], []
    return "error", (str(first) if isinstance(first, SandboxError) else excinfo.exconly())[:2000], []


def first_cause(raised: BaseException) -> tuple[BaseException, list[str]]:
    """What a check's error began with: the first SandboxError among the exceptions raised while handling
    others (a cleanup call after the sandbox failed raises "the sandbox is closed" over the timeout that
    closed it), and, short, each raised after it; `raised` itself where no SandboxError came before it."""
    chain = [raised]
    while not chain[-1].__suppress_context__ and chain[-1].__context__ is not None and len(chain) < 20:
        chain.append(chain[-1].__context__)
    failed = [i for i, e in enumerate(chain) if isinstance(e, SandboxError)]
    if not failed or failed[-1] == 0:
        return raised, []
    first = failed[-1]  # the deepest: raised first
    return chain[first], [f"{type(e).__name__}: {e}"[:500] for e in reversed(chain[:first])]


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A check whose result is `error` shows as E and counts as an error, as in its report (pytest would call an
    exception in the test's call a failure); the session's exit status is the same."""
    if report.when == "call" and report.failed:
        records = [record for name, record in report.user_properties if name == "nsconform"]
        if records and records[0]["outcome"] == "error":
            return "error", "E", "ERROR"
    return None


class Recorder:
    """Collects every result (its own, or the xdist workers') and writes the reports at the end.

    Only the controller (or a serial run) writes: it checks at start that --nsc-report-dir is writable
    and reads --nsc-baseline in full (it may be the very report this run replaces), and at the end fails
    the session on any regression. A session without a result (collect-only, everything deselected,
    interrupted before a check ended, a usage or internal error) writes nothing and compares nothing: the
    report directory stays as it was. Reports that cannot be written end the session with exit status 4
    and one line saying why (nsconform.report.writing), the earlier set in place.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.book = ResultBook()
        self.started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.t0 = time.monotonic()
        self.controller = not hasattr(config, "workerinput")
        self.baseline: Baseline | None = None
        self.comparison: Comparison | None = None
        self.written: list[str] = []
        self.unwritten = ""  # why the reports could not be written
        if self.controller:
            settings = config.stash[SETTINGS]
            try:
                check_writable(settings.report_dir)
                self.baseline = Baseline.load(settings.baseline) if settings.baseline else None
            except (ReportDirError, ReportError) as e:
                raise pytest.UsageError(str(e)) from None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, record in report.user_properties:
            if name == "nsconform":
                self.book.add(record)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.controller or not len(self.book) or session.exitstatus in NOTHING_TO_REPORT:
            return  # workers report to the controller; a session that ran no check writes nothing
        settings = self.config.stash[SETTINGS]
        results = self.book.results()
        self.comparison = self.baseline.compare(results) if self.baseline else None
        doc = document(
            runtime={**describe_runtime(settings.runtime), "hardening": self.book.hardening()},
            results=results,
            namespaces=settings.namespaces,
            areas=settings.areas,
            started=self.started,
            duration_s=time.monotonic() - self.t0,
            checks=self.book.guarantees,
            comparison=self.comparison,
        )
        if AUDIT in self.config.stash:
            doc["host_audit"] = self.config.stash[AUDIT]
        extra = None
        if settings.kcidb is not None:  # imported only when asked
            from nsconform.report import kcidb

            extra = {kcidb.FILE: kcidb.render([doc], settings.kcidb)}
        try:
            self.written = [path.name for path in write_reports(settings.report_dir, doc, extra)]
        except ReportWriteError as e:
            self.unwritten = str(e)
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        if (
            self.comparison
            and self.comparison.regressions
            and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """List the regressions and improvements against --nsc-baseline, and where the reports are."""
        if self.comparison:
            regressions, improvements = self.comparison.regressions, self.comparison.improvements
            terminalreporter.section(f"nsconform baseline {self.comparison.baseline}", red=bool(regressions))
            for c in regressions:
                terminalreporter.line(f"REGRESSED {c.label}: {c.was} -> {c.now}: {plain(c.reason, 200)}", red=True)
            for c in improvements:
                terminalreporter.line(f"IMPROVED {c.label}: {c.was} -> {c.now}", green=True)
            verdict = "the session fails" if regressions else "no regression"
            skipped = f", {self.comparison.now_skipped} passes now skipped (no regression)"
            terminalreporter.line(
                f"{len(regressions)} regressions, {len(improvements)} improvements{skipped}: {verdict}"
            )
        if self.written:
            where = self.config.stash[SETTINGS].report_dir
            terminalreporter.write_line(f"nsconform reports in {where}: {', '.join(self.written)}")
        if self.unwritten:
            terminalreporter.write_line(f"nsconform: {self.unwritten}", red=True, bold=True)
