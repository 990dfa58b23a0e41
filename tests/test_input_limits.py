"""Input a user gives nsconform is refused with a clear message when it is not a file, or too large to be one
nsconform wrote (nsconform.inputs); the largest report a real matrix gives passes."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from nsconform import cli, inputs
from nsconform.namespaces import ALL
from nsconform.report import merge
from nsconform.report.baseline import Baseline
from nsconform.report.conformance import ReportError, load_report
from nsconform.runtimes.profiles import ProfileError, load
from tests.reportdata import recorded

PROFILE = 'name = "{name}"\ncommand = ["env", "--"]\nisolates = []\n'


def big_report() -> dict:
    """A report of 256 combinations (every subset of the eight namespaces) and 7,233 results, the largest a
    real matrix run has given, its results those of the recorded report repeated."""
    doc = recorded()
    templates = doc["results"]
    combos = [sorted(c) for n in range(len(ALL) + 1) for c in itertools.combinations(ALL, n)]
    assert len(combos) == 256
    doc["results"] = [
        {
            **templates[i % len(templates)],
            "id": f"{templates[i % len(templates)]['id']}#{i}",
            "combination": combos[i % 256],
        }
        for i in range(7233)
    ]
    return doc


def test_the_largest_real_report_is_a_baseline_and_a_merge_input(tmp_path: Path) -> None:
    path = tmp_path / "conformance.json"
    path.write_text(json.dumps(big_report(), indent=2))
    assert path.stat().st_size < inputs.REPORT_BYTES
    assert len(Baseline.load(path).results) > 0
    assert merge.main([str(tmp_path / "matrix"), str(path)]) == 0


def test_a_report_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"  # not conformance.json: the autouse schema check would read it
    with open(path, "wb") as f:
        f.truncate(inputs.REPORT_BYTES + 1)  # sparse: takes no disk
    with pytest.raises(ReportError, match=r"--nsc-baseline .*: 67,108,865 bytes, more than the 64 MiB it may have"):
        load_report(path, what="--nsc-baseline")
    with pytest.raises(SystemExit) as exited:
        merge.main([str(tmp_path / "matrix"), str(path)])
    assert exited.value.code == 2 and not (tmp_path / "matrix").exists()


@pytest.mark.parametrize("kind", ["directory", "FIFO"])
def test_a_baseline_that_is_no_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "baseline.json"
    path.mkdir() if kind == "directory" else os.mkfifo(path)  # a FIFO no one writes: must not be waited on
    with pytest.raises(ReportError, match=f"--nsc-baseline {path}: a {kind}, not a file"):
        load_report(path, what="--nsc-baseline")


def test_a_profile_over_a_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(PROFILE.format(name="big") + "# " + "x" * inputs.PROFILE_BYTES + "\n")
    with pytest.raises(ProfileError, match=r"profile .*big.toml: 1,048,\d+ bytes, more than the 1 MiB it may have"):
        load(path)


def test_a_profile_name_over_256_characters_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "named.toml"
    path.write_text(PROFILE.format(name="n" * inputs.NAME_CHARS))
    assert load(path).name == "n" * inputs.NAME_CHARS
    path.write_text(PROFILE.format(name="n" * (inputs.NAME_CHARS + 1)))
    with pytest.raises(ProfileError, match="key `name`: 257 characters: a name may have at most 256"):
        load(path)


@pytest.mark.parametrize(
    ("value", "ok"), [("10", True), ("3600", True), ("0.5", True), ("0", False), ("nan", False), ("-inf", False)]
)
def test_seconds_are_finite_and_in_range(value: str, ok: bool) -> None:
    if ok:
        assert inputs.seconds("--x", value, 3600) == float(value)
    else:
        with pytest.raises(inputs.InputError, match="--x must be a number of seconds greater than 0"):
            inputs.seconds("--x", value, 3600)


@pytest.mark.parametrize("value", ["nan", "inf", "0", "86401"])
def test_a_kernel_timeout_out_of_range_exits_4_at_once(value: str, tmp_path: Path, capsys) -> None:
    reports = tmp_path / "reports"
    assert cli.main(["--kernels=host", f"--kernel-timeout={value}", f"--report-dir={reports}"]) == 4
    assert "--kernel-timeout must be a number of seconds greater than 0 and at most 86400" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
