"""The hardening areas in every view: results that name their area, summary entries beside the namespaces',
and reports of earlier versions (no areas) that still load, merge and serve as baselines."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from nsconform.report import htmlreport, junit, merge, summary
from nsconform.report.baseline import Baseline
from nsconform.report.conformance import load_report
from nsconform.report.results import Result, summarize
from nsconform.report.schema import validate
from nsconform.report.writing import write_atomic
from tests.chromium import dump_dom
from tests.reportdata import RECORDED, recorded

SHIPPED = ["ipc", "mnt", "net", "pid", "uts"]


def area_result(check: str, outcome: str, rests_on: str, reason: str = "") -> dict[str, Any]:
    area = check.split(".", 1)[0]
    return {
        "id": f"isolation_checks/{area}.py::test_{check.split('.', 1)[1]}[shipped]",
        "check": check,
        "namespace": None,
        "combination": SHIPPED,
        "expected": "declared",
        "outcome": outcome,
        "reason": reason,
        "evidence": {"CapEff": ["CAP_KILL"]},
        "duration_s": 0.01,
        "area": area,
        "rests_on": rests_on,
    }


def with_areas() -> dict[str, Any]:
    """The recorded report with caps (its facts passed) and paths (violated) judged too."""
    doc = recorded()
    doc["results"] += [
        area_result("caps.sets_as_declared", "passed", "facts"),
        area_result("paths.masked_show_nothing", "failed", "behaviour", "masked paths show something inside"),
    ]
    results = [Result(**r) for r in doc["results"]]
    doc["summary"] = summarize(results, list(recorded()["summary"]), ("caps", "paths"))
    doc["checks"] |= {"caps.sets_as_declared": "No capability beyond the declared set."}
    return doc


def test_area_results_and_summary_match_the_schema_and_leave_the_namespaces_as_they_were() -> None:
    doc = with_areas()
    validate(doc, closed=True)
    before = recorded()
    old = summarize([Result(**r) for r in before["results"]], list(before["summary"]))
    assert {ns: doc["summary"][ns] for ns in old} == old
    assert list(doc["summary"])[-2:] == ["caps", "paths"]
    assert doc["summary"]["caps"]["verdict"] == "conformant"
    assert doc["summary"]["caps"]["basis"] == {
        "behavioural_passed": 0,
        "identity_passed": 0,
        "rests_on": "facts only",
        "facts_passed": 1,
    }
    assert doc["summary"]["paths"]["verdict"] == "violated"
    assert all("area" not in r for r in doc["results"] if r["namespace"] is not None)


def test_summary_markdown_lists_areas_beside_namespaces() -> None:
    text = summary.render(with_areas())
    assert "| namespace or area | verdict | rests on |" in text
    assert "| `caps` | ✅ conformant | facts only |" in text
    assert "| `paths` | ❌ violated |" in text
    assert "[shipped] failed (expected declared)" not in text  # a failure names its sandbox, not a combination
    assert "paths.masked_show_nothing" in text


def test_html_has_a_shipped_column_and_area_rows() -> None:
    page = htmlreport.render(with_areas())
    assert 'title="as shipped: ipc+mnt+net+pid+uts"' in page
    assert "caps.sets_as_declared" in page and "[shipped]</span> failed (expected declared)" in page
    assert "caps isolated" not in page  # an area is a row group, never an axis


def test_junit_names_the_area() -> None:
    root = ET.fromstring(junit.render(with_areas()).encode())
    names = {c.get("name"): c.get("classname") for c in root.iter("testcase")}
    assert names["caps.sets_as_declared[shipped]"] == "nsconform.caps"
    assert names["paths.masked_show_nothing[shipped]"] == "nsconform.paths"


def test_a_report_without_areas_merges_with_one_that_has_them(tmp_path) -> None:
    grid = merge.grid(merge.hosts([("old/conformance.json", recorded()), ("new/conformance.json", with_areas())]))
    assert list(grid)[-2:] == ["caps", "paths"]
    assert [c.state for c in grid["caps"]["caps.sets_as_declared"]] == ["none", "passed"]
    assert merge.verdicts(merge.hosts([("a", recorded()), ("b", with_areas())]), "paths") == ["none", "violated"]


def test_an_earlier_report_is_a_baseline_for_a_run_with_areas() -> None:
    load_report(RECORDED)
    results = [Result(**r) for r in with_areas()["results"]]
    comparison = Baseline.load(RECORDED).compare(results)
    assert not comparison.regressions


def test_html_detail_panel_names_the_shipped_sandbox(tmp_path: Path) -> None:
    """Chromium: an area's cell opens its detail panel, which names the as-shipped sandbox and the evidence."""
    doc = with_areas()
    index = next(i for i, r in enumerate(doc["results"]) if r["check"] == "paths.masked_show_nothing")
    page = tmp_path / "conformance.html"
    write_atomic(page, htmlreport.render(doc))
    dom = dump_dom(page, f"#result={index}")
    panel = dom[dom.index('<aside id="detail"') : dom.index("</aside>")]
    assert "paths.masked_show_nothing [shipped]" in panel and "failed (expected declared)" in panel
    assert "CapEff" in panel
