"""Benchmark: the conformance matrix against its physical floor, measured side by side in one run.

    .venv/bin/python bench/run.py [--quick]

(a) the full default native matrix, wall time with -n auto, every hardening area selected (--nsc-areas: the
    native runtime has no as-shipped sandbox, so they cost their collection and reports; (i) measures one)
(b) the floor: the same number of bare `unshare ... python3 -S -c pass` sandboxes spread over the
    cores, plus pytest's own cost for a trivial parametrized test with the same item count (-n auto)
    (a) and (b) are taken in turns, 3 rounds (--quick) or 5, and each is the median of its rounds
(c) one sandbox's start-up (made, probe answering) against that unshare + python reference, with the
    session's fork server as in a run (and without it, as outside a session)
(d) peak RSS of an xdist worker
(e) --nsc-runtime bwrap over the whole catalogue against bwrap's bare start-up, per combination
(f) growth: 3, 6 and 8 namespaces (8, 64 and 256 combinations)
(g) the wheel: built from this checkout and installed alone in a new venv, its `nsconform -n auto` run
    from another directory against (a), taken in the same turns
(h) what an installed nsconform costs a pytest session that does not enable it: a one-test session's
    start-up in that venv against a venv with nsconform's dependencies only
(i) the hardening areas' as-shipped sandbox (runc's `runc spec` bundle): its start-up against one of runc's
    per-combination sandboxes, and a runc run of its declared combination with and without its areas
The last line printed is one JSON object with all figures (matrix_s, floor_s, ratio ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nsconform.areas import ALL as AREAS
from nsconform.runtimes.runtime import PROFILES_DIR, resolve
from nsconform.sandbox import forkserver
from nsconform.sandbox.native import NativeRuntime
from nsconform.sandbox.sandbox import Sandbox

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench.* from the checkout
from bench.wheelbuild import ROOT, build_wheel

DEPENDENCIES = ["pytest", "pytest-xdist", "pyroute2", "psutil"]

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
REFERENCE = [
    "unshare",
    "--uts",
    "--ipc",
    "--net",
    "--pid",
    "--fork",
    "--mount",
    "--mount-proc",
    "/usr/bin/python3",
    "-S",
    "-c",
    "pass",
]
BWRAP_BARE = ["bwrap", "--dev-bind", "/", "/", "--unshare-all", "--", "/usr/bin/python3", "-S", "-c", "pass"]
SIX = "uts,pid,mnt,ipc,net,user"


def wall(cmd: list[str], ok: tuple[int, ...] = (0,), **kwargs) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, **kwargs)
    seconds = time.perf_counter() - t0
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(map(str, cmd))}: exit status {done.returncode}")
    return seconds


def suite(work: Path, name: str, *args: str, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall time of a conformance run, and how many results it reported."""
    report_dir = work / name
    seconds = wall(  # a failed check is a result here (bwrap's violations), not a failed benchmark
        [*PYTEST, "-n", "auto", f"--nsc-report-dir={report_dir}", *args],
        ok=(0, 1),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    results = json.loads((report_dir / "conformance.json").read_text())["results"]
    return seconds, len(results)


def spread(cmd: list[str], count: int) -> float:
    """Wall time of `count` runs of `cmd`, as many at once as there are cores."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda _: subprocess.run(cmd, check=True), range(count)))
    return time.perf_counter() - t0


def trivial_pytest(work: Path, items: int) -> float:
    """pytest's own cost (xdist's included, nsconform's plugin not enabled) for `items` trivial tests."""
    test = work / "test_trivial.py"
    test.write_text(
        f"import pytest\n\n@pytest.mark.parametrize('i', range({items}))\ndef test_item(i):\n    assert i >= 0\n"
    )
    command = [*PYTEST, "-n", "auto", "-c", os.devnull, "--rootdir", str(work), str(test)]
    return wall(command, cwd=work)


def median_ms(fn, repeat: int) -> float:
    """Median wall time of fn(); fn may return a callable that ends what it made, outside the timing."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        end = fn()
        samples.append(time.perf_counter() - t0)
        if callable(end):
            end()
    return statistics.median(samples) * 1000


def one_sandbox():
    """Start-up only: the sandbox is made and its probe has answered; closing it is not timed."""
    return Sandbox(NativeRuntime().launch(frozenset(SIX.split(","))), 10).close


def as_shipped(work: Path, repeat: int) -> dict[str, float]:
    """(i): the as-shipped sandbox's start-up against a per-combination one of the same runtime (runc), and what
    the areas add to a run (runc's declared combination, with and without --nsc-areas)."""
    runc = resolve("runc", ROOT)
    shipped = median_ms(lambda: Sandbox(runc.launch_shipped(), 10).close, repeat)
    own = median_ms(lambda: Sandbox(runc.launch(frozenset(runc.isolates or ())), 10).close, repeat)
    declared = ("--nsc-runtime", "runc", "--nsc-combinations", "declared")
    without = statistics.median(suite(work, "runc-plain", *declared, "--nsc-areas", "none")[0] for _ in range(3))
    with_areas = statistics.median(suite(work, "runc-areas", *declared)[0] for _ in range(3))
    return {
        "shipped_startup_ms": round(shipped, 1),
        "runc_startup_ms": round(own, 1),
        "runc_declared_s": round(without, 3),
        "runc_declared_with_areas_s": round(with_areas, 3),
    }


def venv(path: Path, *packages: str) -> Path:
    """A new virtualenv at `path` with `packages` installed; its bin directory."""
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(path)], check=True)
    subprocess.run([path / "bin" / "python", "-m", "pip", "install", "-q", *packages], check=True)
    return path / "bin"


def wheel_venvs(work: Path) -> tuple[Path, Path]:
    """(g) and (h)'s venvs: the wheel of this checkout installed alone; nsconform's dependencies only."""
    wheel = build_wheel(work / "wheel")
    return venv(work / "with", str(wheel)), venv(work / "without", *DEPENDENCIES)


def wheel_suite(work: Path, bin_dir: Path) -> float:
    elsewhere = work / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return wall([bin_dir / "nsconform", "-q", "-n", "auto", f"--report-dir={work / 'wheel-run'}"], cwd=elsewhere)


def idle_session_ms(work: Path, bin_dir: Path, repeat: int) -> float:
    """A one-test pytest session's wall time, in a directory of its own (no configuration of nsconform's)."""
    project = work / "idle"
    project.mkdir(exist_ok=True)
    (project / "test_one.py").write_text("def test_one():\n    pass\n")
    command = [bin_dir / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_one.py"]
    return median_ms(lambda: wall(command, cwd=project), repeat)


def peak_worker_rss_mb(work: Path) -> float:
    rss_dir = work / "rss-samples"
    rss_dir.mkdir()
    suite(work, "rss", "-p", "bench.rss", env={"NSCONFORM_BENCH_RSS_DIR": str(rss_dir)})
    workers = [int(p.read_text()) for p in rss_dir.iterdir() if p.name.startswith("gw")]
    return max(workers) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions; growth up to 6 namespaces; no bwrap")
    quick = parser.parse_args().quick
    repeat = 10 if quick else 30
    rounds = 3 if quick else 5
    figures: dict[str, object] = {"quick": quick, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="nsc-bench-") as tmp:
        work = Path(tmp)
        with_nsconform, without = wheel_venvs(work)
        # matrix, floor and wheel taken in turns, the median of each: a noisy moment hits them alike
        combos, matrix, sandboxes, pytest_only, wheel = 64, [], [], [], []
        for _ in range(rounds):
            seconds, items = suite(work, "matrix", f"--nsc-areas={','.join(AREAS)}")
            matrix.append(seconds)
            sandboxes.append(spread(REFERENCE, combos))
            pytest_only.append(trivial_pytest(work, items))
            wheel.append(wheel_suite(work, with_nsconform))
        matrix_s, floor_sandboxes, floor_pytest = map(statistics.median, (matrix, sandboxes, pytest_only))
        figures.update(
            matrix_s=round(matrix_s, 3),
            matrix_runs_s=[round(x, 3) for x in matrix],
            items=items,
            combinations=combos,
            floor_sandboxes_s=round(floor_sandboxes, 3),
            floor_pytest_s=round(floor_pytest, 3),
        )
        figures["floor_s"] = round(floor_sandboxes + floor_pytest, 3)
        figures["ratio"] = round(matrix_s / (floor_sandboxes + floor_pytest), 2)
        print(
            f"(a) matrix: {matrix_s:.2f} s for {items} results; (b) floor: {figures['floor_s']} s "
            f"({floor_sandboxes:.2f} s sandboxes + {floor_pytest:.2f} s pytest); ratio {figures['ratio']}"
        )

        with forkserver.serving(10) as server:  # as in a session: its fork server started once, before
            t0 = time.perf_counter()
            server.start()
            server_ms = (time.perf_counter() - t0) * 1000
            startup = median_ms(one_sandbox, repeat)
        cold = median_ms(one_sandbox, repeat)  # outside a session: each sandbox starts its own interpreter
        reference = median_ms(lambda: subprocess.run(REFERENCE, check=True), repeat)
        figures.update(
            startup_ms=round(startup, 1),
            reference_ms=round(reference, 1),
            startup_ratio=round(startup / reference, 2),
            startup_without_fork_server_ms=round(cold, 1),
            fork_server_start_ms=round(server_ms, 1),
        )
        print(
            f"(c) one sandbox: {startup:.1f} ms vs reference {reference:.1f} ms ({figures['startup_ratio']}x); "
            f"{cold:.1f} ms without the session's fork server (started once in {server_ms:.1f} ms)"
        )

        if resolve("runc", ROOT).unavailable() is None:
            figures.update(as_shipped(work, repeat))
            print(
                f"(i) the areas' as-shipped sandbox (runc): {figures['shipped_startup_ms']} ms start-up vs "
                f"{figures['runc_startup_ms']} ms for a per-combination one; runc's declared combination "
                f"{figures['runc_declared_s']} s, with its areas {figures['runc_declared_with_areas_s']} s"
            )

        figures["peak_worker_rss_mb"] = round(peak_worker_rss_mb(work), 1)
        print(f"(d) peak worker RSS: {figures['peak_worker_rss_mb']} MB")

        if not quick and shutil.which("bwrap") and (PROFILES_DIR / "bwrap.toml").exists():
            bwrap_s, bwrap_items = suite(work, "bwrap", "--nsc-runtime", "bwrap")
            bare = median_ms(lambda: subprocess.run(BWRAP_BARE, check=True), repeat)
            figures.update(bwrap_matrix_s=round(bwrap_s, 3), bwrap_items=bwrap_items, bwrap_bare_ms=round(bare, 1))
            print(f"(e) bwrap: {bwrap_s:.2f} s for {bwrap_items} results; bare bwrap start-up {bare:.1f} ms")

        wheel_s = statistics.median(wheel)
        figures.update(wheel_matrix_s=round(wheel_s, 3), wheel_ratio=round(wheel_s / matrix_s, 2))
        print(f"(g) the wheel's nsconform -n auto: {wheel_s:.2f} s ({figures['wheel_ratio']}x the checkout's)")
        idle_with, idle_without = (idle_session_ms(work, bin_dir, repeat) for bin_dir in (with_nsconform, without))
        figures.update(idle_session_ms=round(idle_with, 1), idle_session_without_ms=round(idle_without, 1))
        print(
            f"(h) a session that does not enable nsconform: {idle_with:.1f} ms with it installed, "
            f"{idle_without:.1f} ms without"
        )

        growth = {}
        for namespaces in ("uts,pid,ipc", SIX, *(() if quick else ("uts,pid,mnt,ipc,net,user,cgroup,time",))):
            count = 2 ** len(namespaces.split(","))
            growth[count] = round(suite(work, f"growth{count}", "--nsc-namespaces", namespaces)[0], 3)
        figures["growth_s"] = growth
        print(f"(f) growth (combinations: seconds): {growth}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
