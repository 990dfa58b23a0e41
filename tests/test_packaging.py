"""One import package, `nsconform`, enabled only where asked: the wheel alone runs the suite from any
directory, and an installed nsconform changes no other pytest session."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.wheelbuild import build_wheel
from nsconform.hygiene import naming
from tests.conftest import ROOT

SUITE_OPTIONS = ["-n", "2", "--runtime", "unshare", "--namespaces", "uts,pid,ipc", "--no-host-audit"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def clean_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel installed alone (and its dependencies)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return venv


def top_level_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/", 1)[0] for name in archive.namelist()}


def test_wheel_installs_one_import_package_with_its_profiles_and_configuration(wheel: Path) -> None:
    names = top_level_names(wheel)
    assert {name for name in names if not name.endswith(".dist-info")} == {"nsconform"}
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in files if n.endswith("entry_points.txt"))
    assert {
        "nsconform/pytest.ini",
        "nsconform/runtimes/bundled/unshare.toml",
        "nsconform/isolation_checks/uts.py",
        "nsconform/report/schema.json",
        "nsconform/kernels/__init__.py",
    } <= files
    assert "nsconform/fixtures/sandboxes.py" in files
    engine = ROOT / "src" / "nsconform"
    modules = {f"nsconform/{p.relative_to(engine)}" for p in engine.rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= files, sorted(modules - files)  # every subpackage listed in pyproject.toml
    assert "pytest11" not in entry_points  # the plugin is never loaded by itself
    assert "nsconform = nsconform.cli:main" in entry_points


def outcomes(report_dir: Path) -> dict[str, str]:
    report = json.loads((report_dir / "conformance.json").read_text())
    return {result["id"]: result["outcome"] for result in report["results"]}


def test_wheel_runs_the_suite_from_an_unrelated_directory_as_the_checkout_does(
    clean_venv: Path, tmp_path: Path
) -> None:
    # 1. the wheel's command, from a directory that has nothing of nsconform's
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [clean_venv / "bin" / "nsconform", *SUITE_OPTIONS], cwd=elsewhere, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    # 2. only `nsconform` is importable of what it installed: no `fixtures`, `reports` or `isolation_checks`
    empty = tmp_path / "empty"  # (elsewhere has a reports/ now, which python -c would import from)
    empty.mkdir()
    for name in ("fixtures", "reports", "isolation_checks"):
        probe = subprocess.run([clean_venv / "bin" / "python", "-c", f"import {name}"], cwd=empty, capture_output=True)
        assert probe.returncode != 0, f"{name} is importable from the wheel's venv"
    # 3. the checkout's run with the same options gives the same result, id by id
    checkout = subprocess.run(
        [sys.executable, "-m", "nsconform", *SUITE_OPTIONS, f"--report-dir={tmp_path / 'checkout'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checkout.returncode == 0, checkout.stdout[-3000:]
    wheel_results = outcomes(elsewhere / "reports")
    assert wheel_results and wheel_results == outcomes(tmp_path / "checkout")
    assert all(nodeid.startswith("isolation_checks/") for nodeid in wheel_results)


UNRELATED_CONFTEST = """
    import pytest

    def pytest_addoption(parser):
        parser.addoption("--runtime", default="runc", choices=["runc", "runsc"])
        parser.addoption("--namespaces", default="all")
        parser.addoption("--baseline", default=None)

    @pytest.fixture
    def host():
        return "their own host"
"""
UNRELATED_TESTS = """
    import os
    import sys

    from tests.fixtures import VALUE

    def test_their_fixtures_package():
        assert VALUE == 42

    def test_their_options(pytestconfig):
        assert pytestconfig.getoption("runtime") == "runsc" and pytestconfig.getoption("namespaces") == "all"

    def test_their_host(host):
        assert host == "their own host"

    def test_leaves_a_file_in_dev_shm():
        open(os.environ["LEFT_IN_SHM"], "w").close()

    def test_nsconform_is_not_loaded():
        assert not [name for name in sys.modules if name.split(".")[0] == "nsconform"]
"""
WITH_NSCONFORM = """
    def test_nsconform_fixtures_beside_theirs(nsconform_sandbox_factory, nsconform_host, host, pytestconfig):
        box = nsconform_sandbox_factory(namespaces={"uts"})
        assert box.ns_inode("uts") != nsconform_host.ns_inode("uts")
        assert host == "their own host" and pytestconfig.getoption("runtime") == "runsc"
"""
TESTINFRA = """
    def test_testinfra_host(host):
        assert host.file("/proc/self/ns/uts").exists and host.run("true").rc == 0

    def test_nsconform_beside_testinfra(nsconform_sandbox_factory, nsconform_host):
        box = nsconform_sandbox_factory(namespaces={"pid"})
        assert box.probe("identity")["pid"] == 1
        assert box.ns_inode("pid") != nsconform_host.ns_inode("pid")
"""


def project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def left_in_shm() -> Iterator[Path]:
    path = Path("/dev/shm") / naming.unique("unrelated")
    yield path
    path.unlink(missing_ok=True)


def run_pytest(where: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_an_unrelated_project_runs_as_without_nsconform(tmp_path: Path, left_in_shm: Path) -> None:
    theirs = project(
        tmp_path,
        {
            "pytest.ini": "[pytest]\n",
            "conftest.py": UNRELATED_CONFTEST,
            "tests/__init__.py": "",
            "tests/fixtures/__init__.py": "VALUE = 42\n",
            "tests/test_theirs.py": UNRELATED_TESTS,
        },
    )
    run = run_pytest(theirs, "--runtime", "runsc", "tests", env={"LEFT_IN_SHM": str(left_in_shm)})
    assert run.returncode == 0, run.stdout[-3000:]
    assert "5 passed" in run.stdout
    assert "nsconform" not in run.stdout + run.stderr
    assert left_in_shm.exists()  # their test's file, which no audit of ours judged


def test_nsconform_enabled_beside_their_conftest_and_testinfra(tmp_path: Path, left_in_shm: Path) -> None:
    theirs = project(
        tmp_path / "theirs",
        {
            "pytest.ini": "[pytest]\n",
            "conftest.py": UNRELATED_CONFTEST,
            "tests/__init__.py": "",
            "tests/fixtures/__init__.py": "VALUE = 42\n",
            "tests/test_theirs.py": UNRELATED_TESTS,
            "tests/test_with_nsconform.py": WITH_NSCONFORM,
        },
    )
    run = run_pytest(
        theirs,
        "-p",
        "nsconform.plugin",
        "--runtime",
        "runsc",
        "--nsc-no-host-audit",
        "-k",
        "not loaded",
        "tests",
        env={"LEFT_IN_SHM": str(left_in_shm)},
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert "5 passed" in run.stdout
    infra = project(tmp_path / "infra", {"pytest.ini": "[pytest]\n", "test_infra.py": TESTINFRA})
    run = run_pytest(infra, "-p", "nsconform.plugin", "--nsc-no-host-audit")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "2 passed" in run.stdout


def test_pytest_help_lists_the_options() -> None:
    run = run_pytest(ROOT, "--help")
    assert run.returncode == 0, run.stderr
    for option in ("--nsc-runtime", "--nsc-namespaces", "--nsc-report-dir", "--nsc-no-host-audit"):
        assert option in run.stdout


COUNT_CHECK_MODULES = """
import collections, json, sys
from nsconform import cli
cli.main(sys.argv[1:])
files = [getattr(module, "__file__", None) or "" for module in list(sys.modules.values())]
seen = collections.Counter(path for path in files if "isolation_checks" in path)
print(json.dumps(seen))
"""


def test_check_modules_are_imported_once_per_session(tmp_path: Path) -> None:
    """One registry of guarantees: each check module is imported under one name only, its conftest too."""
    options = ["-q", "--namespaces=uts", "--no-host-audit", f"--report-dir={tmp_path}"]
    run = subprocess.run(
        [sys.executable, "-c", COUNT_CHECK_MODULES, *options],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert any(path.endswith("/uts.py") for path in seen), run.stdout[-2000:]
    assert set(seen.values()) == {1}, seen


def test_the_plugin_collects_the_checks_in_any_project(tmp_path: Path) -> None:
    """`-p nsconform.plugin --pyargs nsconform.isolation_checks`, in a directory of no configuration: the checks
    are collected whatever python_files says."""
    run = run_pytest(
        tmp_path, "-p", "nsconform.plugin", "--collect-only", "-q", "--nsc-namespaces=uts", "--pyargs",
        "nsconform.isolation_checks",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    assert "uts.py::test_hostname_private[uts]" in run.stdout


def test_a_check_module_named_by_path_is_collected_once() -> None:
    run = run_pytest(ROOT, "--collect-only", "-q", "--nsc-namespaces=uts", "isolation_checks/uts.py")
    ids = [line for line in run.stdout.splitlines() if re.match(r"\S+\.py::", line)]  # not the audit's IPv6
    assert ids and len(ids) == len(set(ids)), run.stdout[-2000:]
