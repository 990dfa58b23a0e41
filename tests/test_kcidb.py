"""kcidb.json: the results in KernelCI's KCIDB v5.3 format, validated with kcidb-io's own schema, result by result."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kcidb_io.schema import V5_3

from nsconform.kernels import Entry, kernel_of
from nsconform.report import kcidb
from nsconform.report.writing import VIEWS
from tests.conftest import ROOT
from tests.reportdata import recorded
from tests.test_kernels import nsconform
from tests.test_merge import other_host

OPTS = kcidb.Options()
DEBIAN_6_1 = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-20)"
STATUS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}


def expected_tests(*reports: dict[str, Any]) -> Counter[tuple[str, str]]:
    """(path, status) of every result of the reports, written out independently of the writer."""
    found: Counter[tuple[str, str]] = Counter()
    for doc in reports:
        for r in doc["results"]:
            combination = r["id"].rsplit("[", 1)[1].rstrip("]").replace("+", "_").replace("/", "_")
            group = r.get("area") or r["namespace"]
            found[(f"nsconform.{group}.{r['check'].split('.', 1)[1]}.{combination}", STATUS[r["outcome"]])] += 1
    return found


def written_tests(data: dict[str, Any]) -> Counter[tuple[str, str]]:
    return Counter((t["path"], t["status"]) for t in data["tests"])


def valid(data: dict[str, Any]) -> dict[str, Any]:
    """The data, validated against KCIDB v5.3 exactly (an older version's rules are not enough)."""
    V5_3.validate_exactly(data)
    ids = {kind: [o["id"] for o in data[kind]] for kind in ("checkouts", "builds", "tests")}
    for kind, found in ids.items():
        assert len(found) == len(set(found)), f"{kind}: repeated ids"
    assert {b["checkout_id"] for b in data["builds"]} <= set(ids["checkouts"])
    assert {t["build_id"] for t in data["tests"]} <= set(ids["builds"])
    return data


def test_one_test_per_result_with_its_path_status_and_evidence() -> None:
    doc = recorded()
    data = valid(kcidb.document([doc], OPTS))
    assert written_tests(data) == expected_tests(doc) and len(data["tests"]) == len(doc["results"])
    assert len(data["checkouts"]) == len(data["builds"]) == 1
    by_report = {t["misc"]["report_id"]: t for t in data["tests"]}
    for r in doc["results"]:
        test = by_report[r["id"]]
        assert test["misc"]["evidence"] == r["evidence"] and test.get("duration") == r.get("duration_s")
        assert test.get("log_excerpt", "") == r["reason"]
        assert test["environment"]["misc"]["host"] == doc["host"]
        assert test["environment"]["misc"]["runtime"]["version"] == doc["runtime"]["version"]
        host = doc["host"]
        assert test["id"].startswith(f"nsconform:{host['hostname']}:{host['kernel']}:native:{r['check']}:")
        assert test["id"].endswith(":20261128T180000Z")
    paths = {t["path"] for t in data["tests"]}
    assert "nsconform.uts.hostname_private.ipc_mnt_uts" in paths and "nsconform.uts.names_shared.none" in paths


def test_two_hosts_merged_hold_exactly_their_results() -> None:
    """Result by result: each report's result is the test of its host with its node id, path and status."""
    a, b = recorded(), other_host()
    b["runtime"]["version"] = "runc 1.1\0"
    data = valid(kcidb.document([a, b], OPTS))
    assert written_tests(data) == expected_tests(a, b) and len(data["tests"]) == len(a["results"] + b["results"])
    tests = {(t["environment"]["misc"]["host"]["hostname"], t["misc"]["report_id"]): t for t in data["tests"]}
    for doc in (a, b):
        for r in doc["results"]:
            test = tests[(doc["host"]["hostname"], r["id"])]
            assert (test["path"], test["status"]) in expected_tests({"results": [r]})
    assert len(data["builds"]) == 2  # two kernels
    statuses = {t["path"]: t["status"] for t in data["tests"] if t["id"].split(":")[1] == "kernel-5-10"}
    assert statuses["nsconform.uts.hostname_private.uts"] == "PASS"


def test_one_build_per_kernel_and_ids_that_never_collide() -> None:
    """The same kernel on two hosts is one checkout and build; the same report twice (same host, kernel, runtime
    and start) gets ids of its own."""
    a, b = recorded(), recorded()
    b["host"]["hostname"] = "another"
    data = valid(kcidb.document([a, b, recorded()], OPTS))
    assert len(data["builds"]) == 1 and len(data["tests"]) == 3 * len(a["results"])
    assert any(t["id"].startswith(f"nsconform:{a['host']['hostname']}#2:") for t in data["tests"])


def test_a_debian_kernel_is_its_package_and_only_other_kernels_take_the_commit() -> None:
    debian, own = recorded(), other_host()
    debian["host"].update(kernel="6.1.0-57-amd64", kernel_version=DEBIAN_6_1)
    commit = "a" * 40
    data = valid(kcidb.document([debian, own], kcidb.options("my_lab", commit)))
    checkouts = {c["misc"]["kernel"]: c for c in data["checkouts"]}
    assert checkouts["6.1.0-57-amd64"]["comment"] == "Debian linux-image-6.1.0-57-amd64 6.1.192-3"
    assert checkouts["6.1.0-57-amd64"]["misc"]["package_version"] == "6.1.192-3"
    assert "git_commit_hash" not in checkouts["6.1.0-57-amd64"]
    assert checkouts["5.10.0-28-amd64"]["git_commit_hash"] == commit
    assert {o["origin"] for kind in ("checkouts", "builds", "tests") for o in data[kind]} == {"my_lab"}
    assert all(t["id"].startswith("my_lab:") for t in data["tests"])


def test_an_entry_without_report_is_one_miss_test_with_the_reason() -> None:
    kernel = kcidb.Kernel("6.1.0-57-amd64", machine="x86_64", package_version="6.1.192-3")
    missing = kcidb.Missing("6.1", "did not boot within 600 s", kernel, "2026-11-28T18:00:00Z", "lab")
    debian = recorded()
    debian["host"].update(kernel="6.1.0-57-amd64", kernel_version=DEBIAN_6_1, machine="x86_64")
    data = valid(kcidb.document([debian], OPTS, [missing]))
    (miss,) = [t for t in data["tests"] if t["status"] == "MISS"]
    assert miss["path"] == "nsconform" and miss["log_excerpt"] == "did not boot within 600 s"
    assert len(data["builds"]) == 1 and miss["build_id"] == data["builds"][0]["id"]  # the same kernel's build
    alone = valid(kcidb.document([], OPTS, [missing]))
    assert "status" not in alone["builds"][0]  # no run on it: whether it boots is not known


def test_a_fetched_series_without_report_is_a_miss_on_its_package_build(tmp_path: Path, monkeypatch) -> None:
    """An audit's 6.1 entry that gave no report: its build is the one its report would have named."""
    cached = tmp_path / "kernels" / "6.1"
    cached.mkdir(parents=True)
    record = {"package": "linux-image-6.1.0-57-amd64", "version": "6.1.192-3"}
    (cached / "fetched.json").write_text(json.dumps(record))
    monkeypatch.setenv("NSCONFORM_CACHE_DIR", str(tmp_path))
    kernel = kernel_of(Entry("6.1", "6.1"))
    booted = kcidb.Kernel.of_host({"kernel": "6.1.0-57-amd64", "kernel_version": DEBIAN_6_1, "machine": "x86_64"})
    assert kernel == kcidb.Kernel("6.1.0-57-amd64", "", "x86_64", "6.1.192-3")
    assert kernel.key(OPTS) == booted.key(OPTS) and kernel.describe() == booted.describe()
    assert kernel_of(Entry("5.10", "5.10")) == kcidb.Kernel("5.10")  # not fetched: only its name is known


def test_hardening_areas_and_hostile_text_stay_in_the_alphabet() -> None:
    doc = recorded()
    result = doc["results"][0]
    doc["results"].append(
        {**result, "id": "x.py::test_y[n/a]", "check": "caps.bounding_set", "area": "caps", "reason": "a\0b" * 9000}
    )
    data = valid(kcidb.document([doc], OPTS))
    test = data["tests"][-1]
    assert test["path"] == "nsconform.caps.bounding_set.n_a"
    assert "\0" not in test["log_excerpt"] and len(test["log_excerpt"]) == kcidb.EXCERPT_LIMIT


@pytest.mark.parametrize(
    ("origin", "commit", "message"),
    [
        ("My-Lab", None, "--kcidb-origin 'My-Lab': KCIDB origins are lowercase letters, digits and _"),
        ("lab", "abc123", "--kcidb-commit 'abc123': not a full git commit hash"),
    ],
)
def test_bad_options_are_refused(origin: str, commit: str | None, message: str) -> None:
    with pytest.raises(kcidb.KcidbError, match=message):
        kcidb.options(origin, commit)


def test_merge_command_writes_kcidb_over_two_hosts(tmp_path: Path) -> None:
    sources = []
    for name, doc in (("a", recorded()), ("b", other_host())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "conformance.json").write_text(json.dumps(doc))
        sources.append(str(tmp_path / name))
    out = tmp_path / "matrix"
    command = [sys.executable, "-m", "nsconform.report.merge", "--kcidb", "--kcidb-origin=lab", str(out), *sources]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / name) for name in ("matrix.html", "matrix.md", "kcidb.json")]
    data = valid(json.loads((out / "kcidb.json").read_text()))
    assert written_tests(data) == expected_tests(recorded(), other_host())
    refused = subprocess.run([*command[:3], "--kcidb-origin=lab", str(out), *sources], capture_output=True, text=True)
    assert refused.returncode == 2 and "add --kcidb" in refused.stderr


def test_a_run_with_kcidb_writes_one_test_per_result(tmp_path: Path) -> None:
    """The documented command: -n 2 on uts, pid and ipc, kcidb.json beside the four reports."""
    reports = tmp_path / "reports"
    done = nsconform("-n", "2", "--namespaces=uts,pid,ipc", "--kcidb", f"--report-dir={reports}", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((reports / "conformance.json").read_text())
    data = valid(json.loads((reports / "kcidb.json").read_text()))
    assert written_tests(data) == expected_tests(doc) and len(data["tests"]) == len(doc["results"]) > 80
    assert {t["status"] for t in data["tests"]} == {"PASS", "SKIP"}
    assert "kcidb.json" in done.stdout


def test_a_run_without_kcidb_removes_an_earlier_runs_kcidb_json(tmp_path: Path) -> None:
    """kcidb.json is one file of the set: a later run without --kcidb does not leave the earlier run's beside its
    own reports (its README stays)."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "README").write_text("mine\n")
    first = nsconform("--namespaces=uts", "--kcidb", f"--report-dir={reports}", tmp_path=tmp_path)
    assert first.returncode == 0 and (reports / "kcidb.json").exists(), first.stdout + first.stderr
    second = nsconform("--namespaces=uts", f"--report-dir={reports}", tmp_path=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert sorted(p.name for p in reports.iterdir()) == sorted(["README", *VIEWS])
    assert (reports / "README").read_text() == "mine\n"


def test_a_merge_without_kcidb_removes_an_earlier_merges_kcidb_json(tmp_path: Path) -> None:
    """The same for nsconform-merge's set: matrix.html, matrix.md and, only with --kcidb, kcidb.json."""
    report = tmp_path / "host.json"
    report.write_text(json.dumps(recorded()))
    out = tmp_path / "merged"
    merge = [sys.executable, "-m", "nsconform.report.merge"]
    assert subprocess.run([*merge, "--kcidb", str(out), str(report)], capture_output=True).returncode == 0
    assert (out / "kcidb.json").exists()
    again = subprocess.run([*merge, str(out), str(report)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["matrix.html", "matrix.md"]
    assert "kcidb.json" not in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nsc-kcidb", "--nsc-kcidb-origin=Lab"], "--nsc-kcidb-origin 'Lab': KCIDB origins are lowercase"),
        (["--nsc-kcidb-commit=" + "a" * 40], "--nsc-kcidb-commit is for kcidb.json: add --nsc-kcidb"),
    ],
)
def test_bad_kcidb_options_are_a_usage_error_at_start(run_suite, args: list[str], message: str) -> None:
    run = run_suite("--nsc-namespaces", "uts", *args)
    assert run.ret == pytest.ExitCode.USAGE_ERROR and message in run.output
    assert run.report == {}


def test_an_audit_entry_without_report_is_a_miss_beside_the_others(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = nsconform("--kernels=9.9,host", "--namespaces=uts", "--kcidb", f"--report-dir={reports}", tmp_path=tmp_path)
    assert done.returncode == 1
    host = json.loads((reports / "host" / "conformance.json").read_text())
    valid(json.loads((reports / "host" / "kcidb.json").read_text()))
    data = valid(json.loads((reports / "kcidb.json").read_text()))
    assert written_tests(data) == expected_tests(host) + Counter([("nsconform", "MISS")])
    (miss,) = [t for t in data["tests"] if t["status"] == "MISS"]
    assert "unknown Debian kernel series 9.9" in miss["log_excerpt"] and miss["environment"]["misc"] == {"entry": "9.9"}
    refused = nsconform("--kernels=host", "--kcidb", "--kcidb-origin=a-b", f"--report-dir={reports}", tmp_path=tmp_path)
    assert refused.returncode == 4 and "--kcidb-origin 'a-b'" in refused.stderr
