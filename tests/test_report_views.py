"""The views of a report (junit.xml, summary.md, conformance.html), rendered from recorded data.

tests/data/conformance.json is a real run of a leaky native runtime into which hostile strings were
put (a hostname with <script>, evidence closing a script block, quotes, backticks, control
characters, a lone surrogate): every view must show them as text, never as markup.
"""

from __future__ import annotations

import errno
import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from nsconform import catalogue, namespaces
from nsconform.namespaces import combo_id
from nsconform.report import htmlreport, junit, summary
from nsconform.report.baseline import Baseline
from nsconform.report.conformance import load_report
from nsconform.report.page import COLOURS
from nsconform.report.results import Result, label, summarize
from nsconform.report.writing import VIEWS, ReportWriteError, write_atomic, write_reports
from tests import png
from tests.chromium import chromium, dump_dom, screenshot
from tests.reportdata import HOSTILE, RECORDED, recorded

GITHUB_SUMMARY_LIMIT = 1 << 20


class Tags(HTMLParser):
    """Every element of a page, and the text of its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


def test_recorded_report_is_hostile_and_valid() -> None:
    """The fixture is a valid report that carries every hostile string the views are tested with."""
    doc = load_report(RECORDED)
    text = RECORDED.read_text()
    assert all(s in json.dumps(doc) or s in text for s in HOSTILE)
    assert {r["outcome"] for r in doc["results"]} == {"passed", "failed", "error", "skipped"}


# -- junit.xml --------------------------------------------------------------------------------


def test_junit_has_one_case_per_result_with_evidence() -> None:
    doc = recorded()
    root = ET.fromstring(junit.render(doc).encode())
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [label(r) for r in doc["results"]]
    assert root.find("./testsuite").get("tests") == str(len(doc["results"]))
    for case, r in zip(cases, doc["results"], strict=True):
        assert case.get("classname") == f"nsconform.{r['namespace']}"
        tag = {"failed": "failure", "error": "error", "skipped": "skipped"}.get(r["outcome"])
        assert [child.tag for child in case] == ([tag] if tag else [])
        if r["outcome"] in ("failed", "error"):
            body = case[0].text or ""
            assert r["reason"].split("\n")[0] in body
            assert all(key in body for key in r["evidence"])
    suite = root.find("./testsuite")
    assert int(suite.get("failures")) == sum(r["outcome"] == "failed" for r in doc["results"])
    assert int(suite.get("errors")) == 1 and int(suite.get("skipped")) == 1


def shape(root: ET.Element) -> dict[str, set[str]]:
    """Each element's tag and the attribute names it carries, wherever it stands."""
    found: dict[str, set[str]] = {}
    for node in root.iter():
        found.setdefault(node.tag, set()).update(node.attrib)
    return found


def test_junit_has_the_structure_pytest_writes(pytester: pytest.Pytester) -> None:
    """pytest's own --junitxml on a session with a pass, a failure, an error and a skip: ours uses its
    elements and no attribute it does not, and every test case has a time."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken():
            raise OSError("no")

        def test_pass(record_testsuite_property):
            record_testsuite_property("runtime", "native")

        def test_fail():
            assert False

        def test_error(broken):
            pass

        def test_skip():
            pytest.skip("why")
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "--junitxml=pytest.xml", "-o", "junit_family=xunit2")
    theirs = shape(ET.parse(pytester.path / "pytest.xml").getroot())
    doc = recorded()
    doc["baseline"] = {"file": "base.json", "regressions": [{**doc["results"][0], "now": "failed", "was": "passed"}]}
    root = ET.fromstring(junit.render(doc).encode())
    ours = shape(root)
    assert set(ours) <= set(theirs)
    for tag, attributes in ours.items():
        assert attributes <= theirs[tag], f"{tag}: {attributes - theirs[tag]} not in pytest's junit.xml"
    assert {"failure", "error", "skipped"} <= set(ours)
    assert all(case.get("time") for case in root.iter("testcase"))


def test_junit_escapes_what_xml_cannot_carry() -> None:
    """Control characters and a lone surrogate in evidence become escapes; the hostname stays text."""
    doc = recorded()
    text = junit.render(doc)
    root = ET.fromstring(text.encode())
    assert root.find("./testsuite").get("hostname") == doc["host"]["hostname"]
    failure = next(c for c in root.iter("testcase") if c.get("name") == "uts.hostname_private[uts]")[0]
    assert "\\u001b[31mred" in failure.text and '"\\ud800"' in failure.text
    assert "</script><script>alert(2)</script>" in failure.text  # as text, inside the element
    assert "<script>" not in text


def test_junit_lists_baseline_regressions_as_failures() -> None:
    """A regression that is a missing result still shows up in CI's test view."""
    doc = recorded()
    baseline = Baseline(Path("base.json"), {("uts.gone", "uts"): gone_result()})
    doc["baseline"] = baseline.compare([]).to_json()
    root = ET.fromstring(junit.render(doc).encode())
    gate = root.find("./testsuite[@name='nsconform baseline']")
    assert [c.get("name") for c in gate] == ["uts.gone[uts]"]
    assert "now missing" in gate[0][0].get("message")


def gone_result() -> dict[str, Any]:
    return {"check": "uts.gone", "combination": ["uts"], "outcome": "passed", "reason": ""}


# -- summary.md -------------------------------------------------------------------------------


FENCED = re.compile(r"^(`{3,})text\n.*?^\1$", re.S | re.M)
ALLOWED_TAGS = {"<details>", "<summary>", "</summary>", "</details>"}


def test_summary_has_verdicts_failures_and_host() -> None:
    doc = recorded()
    text = summary.render(doc)
    for ns, entry in doc["summary"].items():
        assert f"| `{ns}` | " in text and entry["verdict"] in text
    for r in doc["results"]:
        if r["outcome"] in ("failed", "error"):
            assert f"[{combo_id(r['combination'])}] {r['outcome']}" in text
            assert f"`{r['check']}`" in text
    assert "## ⏭️ Skipped (1)" in text and "runtime &lt;x&gt;: not installed" in text
    assert "Host facts" in text and doc["host"]["kernel"] in text


def basis_and_hardening() -> dict[str, Any]:
    """The recorded report with what a verdict rests on and the runtime's hardening, as a run writes them now."""
    doc = recorded()
    results = [Result(**{k: r[k] for k in Result.__dataclass_fields__ if k in r}) for r in doc["results"]]
    doc["summary"] = summarize(results, doc["summary"])
    seen = {"cap_eff": "00000000fdecbfff", "seccomp": "2", "no_new_privs": "0", "read_only": ["/usr"]}
    doc["runtime"]["hardening"] = [{**seen, "combinations": ["uts"]}]
    return doc


def test_summary_and_page_say_what_each_verdict_rests_on_and_the_hardening() -> None:
    """Each namespace's basis (behaviour, or identity only: a hollow pass) and the hardening, as information."""
    doc = basis_and_hardening()
    text, page = summary.render(doc), htmlreport.render(doc)
    assert "| namespace | verdict | rests on |" in text
    for entry in doc["summary"].values():
        rests_on = entry["basis"]["rests_on"]
        assert rests_on in ("behaviour", "identity only", "nothing")
        assert ("rests on " + rests_on) in page or entry["verdict"] == "untested"
    assert "## Hardening (information, not a verdict)" in text and "CapEff 00000000fdecbfff, seccomp 2" in text
    assert "Hardening (information, not a verdict)" in page and "read-only /usr" in page


def test_identity_alone_is_a_hollow_pass() -> None:
    """A namespace whose only passing result is its identity rests on `identity only`; a behavioural pass is
    `behaviour`; nothing passed is `nothing`."""
    made = [
        Result(id=check, check=check, namespace=check.split(".")[0], combination=[check.split(".")[0]],
               expected="isolated", outcome=outcome)
        for check, outcome in (
            ("uts.namespace_identity", "passed"),
            ("uts.hostname_private", "skipped"),
            ("pid.namespace_identity", "passed"),
            ("pid.init_is_pid_1", "passed"),
        )
    ]  # fmt: skip
    found = summarize(made, ["uts", "pid", "ipc"])
    assert found["uts"]["verdict"] == "conformant" and found["uts"]["basis"]["rests_on"] == "identity only"
    assert found["pid"]["basis"] == {"behavioural_passed": 1, "identity_passed": 1, "rests_on": "behaviour"}
    assert found["ipc"]["basis"]["rests_on"] == "nothing"


def test_summary_shows_hostile_text_as_text() -> None:
    """Outside code blocks, the only HTML is the summary's own <details>; hostile text is escaped."""
    text = summary.render(recorded())
    outside = FENCED.sub("", text)
    assert set(re.findall(r"</?[a-zA-Z][^>]*>", outside)) <= ALLOWED_TAGS
    assert 'evil&lt;script&gt;alert("host")&lt;/script&gt;&amp;\'"\\|\\`x\\`' in text
    # evidence with ``` inside gets a longer fence, so that it cannot end its block early
    assert "````text\n" in text and 'h```i</details>"' in text


def test_summary_stays_within_a_job_summary_limit() -> None:
    """Thousands of failures with long evidence: the summary lists some, counts the rest, stays bounded."""
    doc = recorded()
    template = next(r for r in doc["results"] if r["check"] == "uts.hostname_private")
    many = []
    for i in range(20000):
        r = json.loads(json.dumps(template))
        r["check"] = f"uts.check_{i % 400}"
        r["combination"] = [f"c{i}"]
        r["reason"] = "x" * 5000
        r["evidence"] = {f"k{j}": "y" * 400 for j in range(40)}
        many.append(r)
    doc["results"] = many
    doc["baseline"] = (
        Baseline(Path("b"), {(r["check"], combo_id(r["combination"])): r | {"outcome": "passed"} for r in many})
        .compare([])
        .to_json()
    )
    text = summary.render(doc)
    assert len(text.encode()) < GITHUB_SUMMARY_LIMIT / 2
    assert "more failures and errors is in conformance.html" in text
    assert "19800 more (conformance.json lists all)" in text


# -- conformance.html -------------------------------------------------------------------------


def defused(value: Any) -> Any:
    """The same data with every < and > taken out of its strings: what a harmless run would give."""
    if isinstance(value, str):
        return value.replace("<", "_").replace(">", "_")
    if isinstance(value, list):
        return [defused(v) for v in value]
    if isinstance(value, dict):
        return {k: defused(v) for k, v in value.items()}
    return value


def structure(page: str) -> list[str]:
    return [tag for tag, _ in parse(page).tags]


def test_html_escapes_everything_from_the_run() -> None:
    """No element comes from the data (the page has the same elements as the defused run's), the
    scripts are the page's two (data and code), and the CSP allows that code by hash only."""
    doc = recorded()
    page = htmlreport.render(doc)
    tags = parse(page)
    assert structure(page) == structure(htmlreport.render(defused(doc)))
    assert [t for t, _ in tags.tags].count("script") == 2
    data, code = tags.scripts
    assert json.loads(data) == json.loads(json.dumps(doc["results"]))  # round-trips, surrogate included
    assert "<" not in data and ">" not in data and "&" not in data
    assert code == htmlreport.SCRIPT
    policy = next(a["content"] for t, a in tags.tags if t == "meta" and a.get("http-equiv"))
    assert (
        "default-src 'none'" in policy
        and "script-src 'sha256-" in policy
        and "unsafe-inline'" not in policy.split("script-src")[1]
    )
    for hostile in HOSTILE:
        assert hostile not in page.replace(htmlreport.SCRIPT, "")


def test_html_matrix_has_a_cell_per_result_and_names_every_check() -> None:
    doc = recorded()
    tags = parse(htmlreport.render(doc))
    cells = [a for t, a in tags.tags if "data-i" in a]
    assert sorted(int(a["data-i"]) for a in cells) == list(range(len(doc["results"])))
    for a in cells:
        r = doc["results"][int(a["data-i"])]
        assert a["class"].split()[0] == f"o-{r['outcome']}"
        assert a["title"].startswith(f"{label(r)}: {r['outcome']}")
    heads = {a.get("title", ""): None for t, a in tags.tags if t == "th"}
    assert doc["checks"]["uts.hostname_private"] in heads


def test_html_marks_regressed_cells() -> None:
    doc = recorded()
    regressed = next(r for r in doc["results"] if r["outcome"] == "failed")
    before = {**regressed, "outcome": "passed"}
    baseline = Baseline(Path("b.json"), {(regressed["check"], combo_id(regressed["combination"])): before})
    doc["baseline"] = baseline.compare([Result(**r) for r in doc["results"]]).to_json()
    tags = parse(htmlreport.render(doc))
    rings = [a for t, a in tags.tags if "reg" in a.get("class", "").split()]
    assert [doc["results"][int(a["data-i"])]["id"] for a in rings] == [regressed["id"]]


def colour(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def test_html_renders_in_chromium(tmp_path: Path) -> None:
    """Chromium shows the page: a screenshot of the right size with passed, failed, error and skipped
    cells in their colours; its DOM names every check and has no element a defused run would not have."""
    doc = recorded()
    page = tmp_path / "conformance.html"
    write_atomic(page, htmlreport.render(doc))
    shot = tmp_path / "shot.png"
    screenshot(page, shot, 1280, 900)
    image = png.read(shot)
    assert (image.width, image.height) == (1280, 900)
    seen = image.colours()
    for outcome in ("passed", "failed", "error", "skipped"):
        assert seen[colour(COLOURS[outcome])] >= 50, f"no {outcome} cells ({COLOURS[outcome]}) in the screenshot"
    dom = dump_dom(page)
    for check in {r["check"] for r in doc["results"]}:
        assert check in dom
    defused_page = tmp_path / "defused.html"
    write_atomic(defused_page, htmlreport.render(defused(doc)))
    assert structure(dom) == structure(dump_dom(defused_page))


def test_html_detail_panel_shows_evidence_as_text(tmp_path: Path) -> None:
    """The page's script fills the detail panel (linked as #result=N) with textContent, never markup."""
    doc = recorded()
    index = next(i for i, r in enumerate(doc["results"]) if label(r) == "uts.hostname_private[uts]")
    page = tmp_path / "conformance.html"
    write_atomic(page, htmlreport.render(doc))
    dom = dump_dom(page, f"#result={index}")
    panel = dom[dom.index('<aside id="detail"') : dom.index("</aside>")]
    assert "hidden" not in panel.split(">", 1)[0]
    assert "uts.hostname_private [uts]" in panel
    assert "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in panel
    assert "<script" not in panel


# -- writing ----------------------------------------------------------------------------------


def test_write_reports_writes_the_four_views(tmp_path: Path) -> None:
    doc = recorded()
    written = write_reports(tmp_path / "out", doc)
    assert sorted(p.name for p in written) == sorted(VIEWS) == sorted(p.name for p in (tmp_path / "out").iterdir())
    assert load_report(tmp_path / "out" / "conformance.json") == json.loads(json.dumps(doc))


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while writing (here: the disk is full at fsync) leaves the old report and no temp file."""
    target = tmp_path / "summary.md"
    target.write_text("old report\n")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("nsconform.report.writing.os.fsync", full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, "new report\n" * 1000)
    assert target.read_text() == "old report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_set_that_fails_midway_leaves_the_earlier_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A file of a set fails while written (the fsync of the last one: EDQUOT) or put in place (the rename of the
    third, after two: EIO): the earlier set and the user's README byte for byte, no temporary file left, the
    error named."""
    out = tmp_path / "out"
    write_reports(out, recorded())
    (out / "README.md").write_text("the user's\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".conformance.html."):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        real_fsync(fd)

    def replace(source: Path, target: Path) -> None:
        if Path(target).name == "summary.md" and Path(source).name.startswith(".summary.md."):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(os, failing, fsync if failing == "fsync" else replace)
    newer = {**recorded(), "started": "2030-01-01T00:00:00Z"}
    code = "EDQUOT" if failing == "fsync" else "EIO"
    with pytest.raises(ReportWriteError, match=rf"reports not written in {out}: .* \({code}\); its files are as"):
        write_reports(out, newer)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_readme_picture_is_a_chromium_screenshot_of_a_report() -> None:
    """docs/images/conformance.png, which the README shows, is what scripts/screenshot.py takes: a
    WIDTH x HEIGHT Chromium screenshot of a report's matrix, with passed and failed cells in their colours."""
    from scripts.screenshot import DEFAULT_OUT, HEIGHT, WIDTH

    image = png.read(DEFAULT_OUT)
    assert (image.width, image.height) == (WIDTH, HEIGHT)
    seen = image.colours()
    for outcome in ("passed", "failed"):
        assert seen[colour(COLOURS[outcome])] >= 50, f"no {outcome} cells ({COLOURS[outcome]}) in {DEFAULT_OUT}"


def default_run(failing: str) -> dict[str, Any]:
    """The recorded report's run, with the results a default run has (every check of the six default namespaces
    on every one of their 64 combinations it applies to: the widest matrix), `failing` failed on each."""
    results = []
    for spec in catalogue.checks():
        if spec.namespace not in namespaces.DEFAULT:
            continue
        for combination in namespaces.matrix(namespaces.DEFAULT, "all"):
            if spec.applies(combination):
                outcome = "failed" if spec.name == failing else "passed"
                results.append(
                    Result(
                        id=f"isolation_checks/{spec.namespace}.py::test_x[{combo_id(combination)}]",
                        check=spec.name,
                        namespace=spec.namespace,
                        combination=sorted(combination),
                        expected=spec.expected(combination),
                        outcome=outcome,
                        reason="it leaked" if outcome == "failed" else "",
                    )
                )
    return {**recorded(), "results": [r.to_json() for r in results], "summary": summarize(results, namespaces.DEFAULT)}


def test_html_verdict_boxes_name_their_failing_checks_with_links_to_their_rows() -> None:
    doc = default_run("ipc.posix_shm_private")
    tags = parse(htmlreport.render(doc))
    links = [a["href"] for t, a in tags.tags if t == "a" and a.get("href", "").startswith("#check-")]
    assert links == ["#check-ipc.posix_shm_private"]
    rows = {a["id"] for t, a in tags.tags if t == "tr" and "id" in a}
    assert "check-ipc.posix_shm_private" in rows
    assert {f"check-{r['check']}" for r in doc["results"]} == rows


def test_html_columns_have_text_labels_with_their_full_names() -> None:
    doc = default_run("")
    tags = parse(htmlreport.render(doc))
    labels = [a["title"] for t, a in tags.tags if t == "th" and "c" in (a.get("class") or "").split()]
    assert len(labels) == 64 and set(labels) == {combo_id(c) for c in namespaces.matrix(namespaces.DEFAULT, "all")}
    page = htmlreport.render(doc)
    assert '<th class="c " title="none"><span>none</span></th>' in page
    assert '<th class="c g" title="ipc+mnt+net+pid+user+uts"><span>upminU</span></th>' in page


def test_html_header_names_the_profile_once() -> None:
    doc = recorded()
    doc["runtime"] = {**doc["runtime"], "profile": "/etc/nsconform/my-runtime.toml"}
    page = htmlreport.render(doc)
    header = page[page.index("<main>") : page.index("<h2>")]
    assert header.count("/etc/nsconform/my-runtime.toml") == 1


def test_html_matrix_fits_1280_pixels(tmp_path: Path) -> None:
    """The widest default matrix, its 64 columns, fits a 1280-pixel window: the page does not scroll sideways
    and neither does the matrix's own box (measured in Chromium by a copy of the page with a script of the
    test's, which writes the widths into the title)."""
    page = htmlreport.render(default_run("net.sysfs_shows_own_links"))
    policy = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', page)
    assert policy
    measure = (
        "<script>addEventListener('load', () => { const box = document.querySelector('.scroll');"
        "document.title = [document.documentElement.scrollWidth, box.scrollWidth, box.clientWidth].join(' '); });"
        "</script></body>"
    )
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace(policy.group(0), "").replace("</body>", measure))
    dom = chromium(tmp_path, "--window-size=1280,900", "--dump-dom", probe.resolve().as_uri())
    title = re.search(r"<title>(\d+) (\d+) (\d+)</title>", dom)
    assert title, dom[:500]
    page_width, matrix_width, box_width = map(int, title.groups())
    assert page_width <= 1280
    assert matrix_width <= box_width
