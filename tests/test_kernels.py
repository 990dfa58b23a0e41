"""`nsconform --kernels`: the suite on the host's kernel and on Debian's 6.1 in a VM, merged into one
matrix, with nothing of the VM left; a bad entry is said for itself, fast, and the others still run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from nsconform.kernels import LOG, Audit, Entry, entries_of, runner
from nsconform.report.writing import VIEWS

REDUCED = ["-n", "2", "--namespaces=uts,pid,ipc"]


def nsconform(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script, in tmp_path (a working directory under /tmp, which a VM has a tmpfs of its own on),
    with a TMPDIR of its own (tmp_path/tmp) to show what it leaves there."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "nsconform", *args],
        capture_output=True,
        text=True,
        timeout=3000,
        env={**(env or os.environ), "TMPDIR": str(tmpdir)},
        cwd=tmp_path,
    )


def vm_leftovers(tmp_path: Path) -> list[str]:
    """QEMU or virtme-ng processes of this test's run (their command lines name its directory), and vng's
    scratch directories and files in the run's TMPDIR."""
    processes = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(tmp_path) in cmdline and ("qemu-system" in cmdline or "vng" in cmdline):
            processes.append(cmdline)
    files = [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith(("vng-", "virtme"))]
    return processes + files


def test_host_and_debian_6_1_give_two_reports_and_one_matrix(tmp_path: Path) -> None:
    """... and with --kcidb one KCIDB file per kernel and one for both (tests/test_kcidb.py checks the files)."""
    reports = tmp_path / "reports"
    done = nsconform("--kernels=host,6.1", *REDUCED, "--kcidb", f"--report-dir={reports}", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    kernels = {}
    for entry in ("host", "6.1"):
        assert set(VIEWS) <= {p.name for p in (reports / entry).iterdir()}
        doc = json.loads((reports / entry / "conformance.json").read_text())
        verdicts = {ns: s["verdict"] for ns, s in doc["summary"].items()}
        assert verdicts == dict.fromkeys(("uts", "pid", "ipc"), "conformant")
        kernels[entry] = doc["host"]["kernel"]
    assert kernels["host"] == platform.release()
    assert kernels["6.1"].startswith("6.1.")
    matrix = (reports / "matrix.md").read_text()
    assert f"6.1 ({kernels['6.1']})" in matrix
    assert (reports / "matrix.html").is_file()
    kcidb_files(reports)
    assert [line for line in done.stderr.splitlines() if line.startswith("nsconform: KVM: ")]  # which one, said
    assert "[6.1] booted " in done.stderr
    console = (reports / "6.1" / LOG).read_text(errors="replace")
    assert f"Linux version {kernels['6.1']}" in console  # the VM's console: the kernel's own lines
    assert "nsconform reports in" in console  # and the suite's output
    assert vm_leftovers(tmp_path) == []


def kcidb_files(reports: Path) -> None:
    """Each kernel's kcidb.json holds its report's results; the merged one holds both, on two builds, the 6.1
    kernel's named by its Debian package."""
    from tests.test_kcidb import expected_tests, valid, written_tests

    docs = [json.loads((reports / entry / "conformance.json").read_text()) for entry in ("host", "6.1")]
    for entry, doc in zip(("host", "6.1"), docs, strict=True):
        assert written_tests(valid(json.loads((reports / entry / "kcidb.json").read_text()))) == expected_tests(doc)
    merged = valid(json.loads((reports / "kcidb.json").read_text()))
    assert written_tests(merged) == expected_tests(*docs)
    assert len(merged["builds"]) == 2
    assert any(c["comment"].startswith("Debian linux-image-6.1.") for c in merged["checkouts"])


def test_a_vm_without_its_script_channel_is_said(tmp_path: Path) -> None:
    """Where the host's root has no udevd, virtme-ng's guest init finds no script ports and the suite's output
    and exit status are lost (vng exits 255): the trouble is what the guest said and what to install, not an
    exit status. The VM's console is played by a command that says what such a guest says."""
    guest = (
        "virtme-ng-init: unable to find udevd, skip udev.\n"
        "virtme-ng-init: virtme-init: cannot find script I/O ports; make sure virtio-serial is available\n"
    )
    out = tmp_path / "6.1"
    argv = ["sh", "-c", 'printf %s "$0"; exit 255', guest]
    trouble = Audit([], tmp_path, 60).run_logged(argv, out, runner.Progress("6.1"), env=None, pidns=True)
    assert trouble is not None
    assert "the VM's script channel is missing" in trouble
    assert (
        "'virtme-ng-init: virtme-init: cannot find script I/O ports; make sure virtio-serial is available'" in trouble
    )
    assert "unable to find udevd" in trouble and "apt-get install udev" in trouble
    assert "255" not in trouble
    assert (out / LOG).read_text() == guest


def test_unknown_series_and_missing_image_are_said_and_nothing_runs(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = nsconform("--kernels=9.9,/nonexistent/vmlinuz", *REDUCED, f"--report-dir={reports}", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "[9.9] error: unknown Debian kernel series 9.9: known are 5.10 (bullseye)" in done.stderr
    assert "[/nonexistent/vmlinuz] error: no kernel image at /nonexistent/vmlinuz" in done.stderr
    assert not reports.exists()


def test_a_file_that_is_not_a_kernel_is_said(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(b"\0" * 4096)
    done = nsconform(f"--kernels={image}", *REDUCED, f"--report-dir={tmp_path / 'reports'}", tmp_path=tmp_path)
    assert done.returncode == 1
    assert f"{image} is not a Linux kernel image" in done.stderr


def test_missing_qemu_is_said(tmp_path: Path) -> None:
    bare = {**os.environ, "PATH": str(tmp_path)}  # vng beside this Python, but no QEMU
    done = nsconform("--kernels=6.1", *REDUCED, f"--report-dir={tmp_path / 'reports'}", tmp_path=tmp_path, env=bare)
    assert done.returncode == 1
    assert f"QEMU (qemu-system-{platform.machine()}) is not installed" in done.stderr


def test_a_bad_entry_does_not_stop_the_others(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = nsconform("--kernels=9.9,host", "--namespaces=uts", f"--report-dir={reports}", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "[9.9] error: unknown Debian kernel series" in done.stderr
    assert (reports / "host" / "conformance.json").is_file()
    assert "| host (" in (reports / "matrix.md").read_text()


def test_a_vm_past_its_limit_is_stopped_and_leaves_nothing(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = nsconform("--kernels=6.1", "--kernel-timeout=20", *REDUCED, f"--report-dir={reports}", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "[6.1] error: stopped at the wall-clock limit (20 s; --kernel-timeout)" in done.stderr
    assert not (reports / "6.1" / "conformance.json").exists()
    assert vm_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("names", "directories"),
    [
        (["host", "6.1", "/boot/vmlinuz-6.1.0-57-amd64"], ["host", "6.1", "vmlinuz-6.1.0-57-amd64"]),
        (["a/bzImage", "b/bzImage", "host", "host"], ["bzImage", "bzImage-2", "host", "host-2"]),
    ],
)
def test_each_entry_has_a_report_directory_of_its_own(names: list[str], directories: list[str]) -> None:
    assert [e.directory for e in entries_of(names)] == directories


def test_entry_kinds() -> None:
    assert [Entry(n, n).kind for n in ("host", "6.12", "9.9", "./6.1", "bzImage")] == [
        "host",
        "series",
        "series",
        "image",
        "image",
    ]
