"""`nsconform --distros` and `--runtime=LIST`: a Debian release's root built once and cached, booted on its own
kernel with the running installation's code, one run per runtime merged into one matrix; a killed audit leaves
nothing running, and the next run reaps what it left.

The tests that boot a release are marked `slow` (docs/distros.md says what they cost); they use the cache where
every run keeps its roots ($NSCONFORM_CACHE_DIR, else /var/cache/nsconform), so that only the first run on a
machine builds trixie's root."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from nsconform import cli
from nsconform.distros import roots
from nsconform.hygiene import journal, reaper
from nsconform.kernels import entries_of, runner, runtimes_of, vm
from nsconform.report.writing import VIEWS

REDUCED = ["-n", "2", "--namespaces=uts,pid,ipc"]


def nsconform(*args: str, tmp_path: Path, timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    """The console script in tmp_path, with a TMPDIR of its own (tmp_path/tmp) to show what it leaves there."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "nsconform", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
        cwd=tmp_path,
    )


def leftovers(tmp_path: Path, names: list[str]) -> list[str]:
    """Processes whose command line names one of `names` (the run's directories) that are still there 30 s on
    (the kernel kills a dead audit's PID namespace at once, and its processes end as the kernel gets to
    them), and anything the run left in its TMPDIR."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["pid"] != os.getpid() and any(name in cmdline for name in names):
            found.append(process)
    alive = psutil.wait_procs(found, timeout=30)[1]
    return [" ".join(p.info["cmdline"])[:200] for p in alive] + [p.name for p in (tmp_path / "tmp").iterdir()]


# -- the command line ---------------------------------------------------------------------------


def test_runtime_takes_a_comma_list_and_the_audits_come_apart() -> None:
    command = cli.translate(["--runtime=native,runc", "--distros", "bookworm,trixie", "--refresh", "-n", "2"])
    assert command.runtimes == ["native", "runc"]
    assert command.own == {"distros": "bookworm,trixie", "refresh": ""}
    assert command.pytest_args == ["-n", "2"]
    assert cli.translate(["--runtime", "runc"]).pytest_options() == ["--nsc-runtime=runc"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--refresh"], "--refresh rebuilds the roots of --distros: give --distros too"),
        (["--kernels=host", "--distros=trixie"], "--kernels and --distros cannot be given together"),
        (["--distros"], "--distros needs a value"),
        (["--kernel-timeout=60"], "--kernel-timeout applies to --kernels and --distros runs only"),
    ],
)
def test_command_line_mistakes_are_said(argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 4
    assert said in capsys.readouterr().err


def test_each_runtime_has_a_report_directory_where_there_are_several() -> None:
    assert [(r.value, r.directory) for r in runtimes_of([])] == [(None, "")]
    assert [(r.value, r.directory) for r in runtimes_of(["runc"])] == [("runc", "")]
    several = runtimes_of(["native", "runc", "/a/mine.toml", "/b/mine.toml"])
    assert [r.directory for r in several] == ["native", "runc", "mine", "mine-2"]
    assert [r.name for r in several] == ["native", "runc", "mine", "mine"]
    assert [e.directory for e in entries_of(["trixie", "trixie"], distro=True)] == ["trixie", "trixie-2"]
    assert {e.kind for e in entries_of(["trixie", "6.1"], distro=True)} == {"distro"}


def test_a_vm_with_several_runtimes_runs_each_in_turn() -> None:
    script = vm.script([["suite", "a"], ["suite", "b"]], [], ["native", "runc"])
    lines = script.splitlines()
    assert lines[-5:] == [
        f"echo {runner.RUNNING} native",
        "suite a || status=$?",
        f"echo {runner.RUNNING} runc",
        "suite b || status=$?",
        'exit "$status"',
    ]
    assert vm.script([["suite", "a"]], [], ["native"]).splitlines()[-1] == "exec suite a"


def test_unknown_release_is_said_at_once_and_nothing_runs(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = nsconform("--distros=buster", *REDUCED, f"--report-dir={reports}", tmp_path=tmp_path, timeout=120)
    assert done.returncode == 1
    assert "[buster] error: unknown Debian release buster: known are bookworm, trixie, forky" in done.stderr
    assert not (reports / "matrix.md").exists()


# -- what goes into a root, and what the VM is given ---------------------------------------------


def dist_info(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_dependencies_debian_packages_too_old_for_pyproject_come_from_pypi(tmp_path: Path) -> None:
    """bookworm's versions: pytest 7.2.1 and pytest-xdist 3.1.0 fall short of pyproject's pytest>=8 and
    pytest-xdist>=3.5; pyroute2 0.7.2 and psutil 5.9.4 do not."""
    site = tmp_path / "usr" / "lib" / "python3" / "dist-packages"
    for name, version in [("pytest", "7.2.1"), ("pytest-xdist", "3.1.0"), ("pyroute2", "0.7.2"), ("psutil", "5.9.4")]:
        dist_info(site, name, version)
    found = roots.requirements(tmp_path)
    assert {name: entry["from"] for name, entry in found.items()} == {
        "pytest": "pypi",
        "pytest-xdist": "pypi",
        "pyroute2": "debian",
        "psutil": "debian",
    }
    assert found["pytest"]["debian"] == "7.2.1"


def test_a_runtime_the_release_does_not_package_is_untested_with_its_reason(tmp_path: Path) -> None:
    record = {"release": "forky", "not_packaged": ["runsc"]}
    root = roots.Root(tmp_path, None, record)  # type: ignore[arg-type]
    assert root.untested("runsc") == "Debian forky does not package runsc"
    assert root.untested("docker") == "dockerd is not started in the distro VMs"
    assert root.untested("runc") is None


def test_the_code_brought_into_the_vm_is_the_running_installations(tmp_path: Path) -> None:
    into = roots.code(tmp_path / "in")
    package = into / "nsconform"
    for part in ("cli.py", "pytest.ini", "isolation_checks", "fixtures", "runtimes/bundled/runc.toml"):
        assert (package / part).exists(), part
    assert not list(package.rglob("__pycache__"))
    assert (package / "cli.py").read_text() == Path(cli.__file__).read_text()


def test_a_failed_build_leaves_nothing_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Complete or absent: a build that fails half-way leaves no directory, and no root that looks cached."""
    monkeypatch.setenv("NSCONFORM_CACHE_DIR", str(tmp_path / "cache"))

    def half_built(release: str, work: Path, say: object) -> dict:
        (work / "root").mkdir()
        (work / "root" / "half").write_text("")
        raise roots.BuildError("mmdebstrap trixie failed (exit 1): E: the archive went away")

    monkeypatch.setattr(roots, "build", half_built)
    with pytest.raises(roots.BuildError, match="the archive went away"):
        roots.root("trixie", False, print)
    assert list(roots.cache_dir().iterdir()) == []
    assert roots.cached("trixie") is None


def fake_root(root: Path) -> None:
    """A root with what the cache's reader looks for: a kernel image and its modules directory."""
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz-6.12.0-test").write_bytes(b"")
    (root / "usr" / "lib" / "modules" / "6.12.0-test").mkdir(parents=True)


def test_a_cached_root_is_used_as_built_unless_built_for_other_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSCONFORM_CACHE_DIR", str(tmp_path / "cache"))
    builds = []

    def build(release: str, work: Path, say: object) -> dict:
        builds.append(release)
        fake_root(work / "root")
        dependencies = {r: {"requirement": r} for r in roots.required()}
        kernel = {"package": "linux-image-6.12.0-test", "version": "6.12.0-1"}
        return {"release": release, "dependencies": dependencies, "kernel": kernel, "built": "now"}

    monkeypatch.setattr(roots, "build", build)
    said: list[str] = []
    first = roots.root("trixie", False, said.append)
    assert builds == ["trixie"] and first.path == roots.cache_dir() / "trixie" / "root"
    roots.root("trixie", False, said.append)
    assert builds == ["trixie"]
    assert said[-1] == "cached: Debian trixie root (built now), linux-image-6.12.0-test 6.12.0-1"
    record = roots.cache_dir() / "trixie" / roots.RECORD
    record.write_text(json.dumps({**first.record, "dependencies": {"pytest": {"requirement": "pytest>=7"}}}))
    roots.root("trixie", False, said.append)
    assert builds == ["trixie", "trixie"]
    assert said[-1].startswith("the cached root was built for pytest>=7, not nsconform's requirements now")
    roots.root("trixie", True, said.append)  # --refresh
    assert builds == ["trixie", "trixie", "trixie"]
    assert [p.name for p in roots.cache_dir().iterdir()] == ["trixie"]  # the old roots are gone


def test_a_killed_build_is_reaped_by_the_next_run(tmp_path: Path) -> None:
    """A process killed while it builds a root leaves its build directory, which the journal lists: the next
    run's reaper removes it, and nothing else in the cache."""
    cache = tmp_path / "cache"
    (cache / "distros" / "trixie").mkdir(parents=True)  # a complete root of an earlier run: not to be touched
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal\n"
            "from nsconform.distros import roots\n"
            "with roots.journaled_dir('build-trixie') as work:\n"
            "    (work / 'root').mkdir()\n"
            "    print(work, flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "NSCONFORM_CACHE_DIR": str(cache)},
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL
    left = Path(killed.stdout.strip())
    assert left.parent == cache / "distros"
    assert left.is_dir()
    reaper.reap()  # what every run does first (another run on this machine may have done it meanwhile)
    assert not left.exists()
    assert [p.name for p in (cache / "distros").iterdir()] == ["trixie"]


# -- several runtimes on the host ----------------------------------------------------------------


def test_several_runtimes_on_the_host_give_a_report_each_and_one_matrix(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = nsconform("--runtime=native,unshare", "--namespaces=uts", f"--report-dir={reports}", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    for runtime in ("native", "unshare"):
        assert set(VIEWS) <= {p.name for p in (reports / runtime).iterdir()}
        doc = json.loads((reports / runtime / "conformance.json").read_text())
        assert doc["runtime"]["name"] == runtime
    unshare = json.loads((reports / "unshare" / "conformance.json").read_text())["runtime"]["version"]
    assert unshare.startswith("unshare from util-linux ")
    matrix = (reports / "matrix.md").read_text()
    assert f"| {platform.release()} native |" in matrix
    assert f"| {platform.release()} unshare {unshare.split()[-1]} |" in matrix


# -- a release booted: slow ----------------------------------------------------------------------


@pytest.mark.slow
def test_trixie_with_native_and_runc_then_cached_then_killed_and_reaped(tmp_path: Path) -> None:
    """The issue's command on one release: a report per runtime and one matrix naming trixie's kernel and runc's
    version; a second run uses the cache and downloads nothing, and, killed while its VM runs, leaves no process;
    the next run reaps what it left (the hard-linked root it booted, vng's scratch)."""
    reports = tmp_path / "reports"
    done = nsconform(
        "--distros=trixie", *REDUCED, "--runtime=native,runc", f"--report-dir={reports}", tmp_path=tmp_path
    )
    assert done.returncode == 0, done.stderr
    versions = {}
    for runtime in ("native", "runc"):
        assert set(VIEWS) <= {p.name for p in (reports / "trixie" / runtime).iterdir()}
        doc = json.loads((reports / "trixie" / runtime / "conformance.json").read_text())
        assert {s["verdict"] for s in doc["summary"].values()} == {"conformant"}
        assert doc["host"]["distro"].startswith("Debian GNU/Linux 13 (trixie)")
        kernel = doc["host"]["kernel"]
        versions[runtime] = str(doc["runtime"].get("version") or "")
    assert kernel.endswith("+deb13-amd64")
    assert versions["runc"].startswith("runc version 1.")
    runc = versions["runc"].split()[2]  # runc version 1.1.15+ds1
    matrix = (reports / "matrix.md").read_text()
    assert f"| trixie ({kernel}) native |" in matrix
    assert f"| trixie ({kernel}) runc {runc} |" in matrix
    assert (reports / "trixie" / "console.log").is_file()

    # The cache, then a kill while the VM runs.
    (tmp_path / "tmp").mkdir(exist_ok=True)
    second = subprocess.Popen(
        [sys.executable, "-m", "nsconform", "--distros=trixie", *REDUCED, f"--report-dir={tmp_path / 'again'}"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
        cwd=tmp_path,
    )
    assert second.stderr is not None
    said = []
    for line in second.stderr:
        said.append(line)
        if "booting " in line:
            break
    second.send_signal(signal.SIGKILL)
    second.wait()
    second.stderr.close()
    assert any("[trixie] cached: Debian trixie root" in line for line in said), said
    assert not [line for line in said if "fetching" in line or "downloading" in line or "building" in line]
    # What it left, as its journal lists it (unless another run on this machine has reaped it meanwhile).
    journals = [path for path in journal.files() if path.name.startswith(f"{second.pid}-")]
    left = [Path(e.name) for p in journals for e in journal.parse(p, p.read_bytes()).left if e.kind == "path"]
    if journals:
        assert [path for path in left if path.parent == roots.cache_dir()], left  # the root it booted
    names = [str(tmp_path / "again"), str(tmp_path / "tmp")]
    assert [line for line in leftovers(tmp_path, names) if not line.startswith("vng-")] == []

    # The next run reaps the killed one's directories, from its journal.
    still = [path for path in left if path.exists()]
    third = nsconform("--distros=buster", f"--report-dir={tmp_path / 'third'}", tmp_path=tmp_path, timeout=300)
    assert third.returncode == 1
    assert leftovers(tmp_path, names) == []
    for path in still:
        assert f"reaped at start: removed path {path} " in third.stderr
        assert not path.exists()
