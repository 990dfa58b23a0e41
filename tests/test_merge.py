"""`nsconform-merge`: many hosts' reports in one compatibility matrix (HTML and Markdown)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from nsconform.report import merge
from tests.chromium import dump_dom
from tests.conftest import ROOT
from tests.reportdata import HOSTILE, recorded


def other_host() -> dict[str, Any]:
    """The recorded report as another host would give it: another kernel, where uts.hostname_private
    passes, and which did not run uts.domainname_private at all."""
    doc = recorded()
    doc["host"].update(hostname="kernel-5-10", kernel="5.10.0-28-amd64", distro="Debian GNU/Linux 11 (bullseye)")
    doc["host"]["kernel_config"] = {"source": "/boot/config-5.10.0-28-amd64", "CONFIG_TIME_NS": "n"}
    for r in doc["results"]:
        if r["check"] == "uts.hostname_private":
            r["outcome"], r["reason"] = "passed", ""
    doc["results"] = [r for r in doc["results"] if r["check"] != "uts.domainname_private"]
    return doc


def columns() -> list[merge.Host]:
    return merge.hosts([("a/conformance.json", recorded()), ("b/conformance.json", other_host())])


def test_matrix_has_a_row_per_check_and_a_column_per_host() -> None:
    cols = columns()
    grid = merge.grid(cols)
    checks = {r["check"] for r in recorded()["results"]}
    assert {check for rows in grid.values() for check in rows} == checks
    assert list(grid) == ["uts", "ipc"]  # the kernel's order
    hostname = grid["uts"]["uts.hostname_private"]
    assert [c.state for c in hostname] == ["failed", "passed"] and merge.differs(hostname)
    assert hostname[0].text == "2/2 failed" and "failed on uts, ipc+mnt+uts" in hostname[0].detail
    assert [c.state for c in grid["uts"]["uts.domainname_private"]] == ["failed", "none"]
    assert not merge.differs(grid["uts"]["uts.names_shared"])


def test_markdown_matrix() -> None:
    text = merge.render_markdown(columns())
    assert "| check | evil&lt;script&gt;" in text and "| kernel-5-10 |" in text
    assert "| `uts.hostname_private` ≠ | ❌ 2/2 failed | ✅ 2/2 passed |" in text
    assert "| `uts.domainname_private` ≠ | ❌ 2/2 failed | not run |" in text
    assert "## Where the hosts differ (2 checks)" in text
    assert "| `kernel_config.source` | unavailable | /boot/config-5.10.0-28-amd64 |" in text
    for hostile in HOSTILE:
        assert hostile not in text


def test_same_hostname_twice_gets_numbered_columns() -> None:
    cols = merge.hosts([("a.json", recorded()), ("b.json", recorded())])
    assert [c.label for c in cols] == [cols[0].label, cols[0].label + " #2"]


def test_merge_command_writes_html_and_markdown(tmp_path: Path) -> None:
    """The documented command, on a report file and a report directory; Chromium shows every check."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "conformance.json").write_text(json.dumps(recorded()))
    (tmp_path / "b" / "conformance.json").write_text(json.dumps(other_host()))
    out = tmp_path / "matrix"
    command = [sys.executable, "-m", "nsconform.report.merge", str(out), str(tmp_path / "a" / "conformance.json")]
    done = subprocess.run([*command, str(tmp_path / "b")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / "matrix.html"), str(out / "matrix.md")]
    dom = dump_dom(out / "matrix.html")
    for check in {r["check"] for r in recorded()["results"]}:
        assert check in dom
    assert "kernel-5-10" in dom and "5.10.0-28-amd64" in dom
    assert "<script" not in dom and "<img" not in dom


def test_merge_command_rejects_what_is_not_a_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "junit"}')
    command = [sys.executable, "-m", "nsconform.report.merge", str(tmp_path / "out"), str(bad)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"report {bad}: schema 'junit', not 'nsconform/1'" in done.stderr
    assert not (tmp_path / "out").exists()
